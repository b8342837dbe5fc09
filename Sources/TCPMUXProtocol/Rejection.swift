/// Why a request gets a `-` reply. Each reason is one case and one line on the wire.
public enum Rejection: Equatable, Sendable, CaseIterable {
    // The request line itself (RequestParser).
    case noRequest
    case unterminatedRequest
    case bareLineFeed
    case strayCarriageReturn
    case controlByte
    case whiteSpace
    case nonASCIIByte
    case emptyName
    case nameTooLong
    // The session.
    case timedOut
    case nestingTooDeep
    /// Also the answer to a client that may not use the service, so that a refusal
    /// does not reveal that the service exists.
    case unknownService
    /// The configuration could not be read or is invalid: fail closed.
    case tableUnavailable
    /// The program or backend could not be reached; decided before any `+`.
    case handOffFailed

    /// The explanation after the `-`: printable ASCII, no CR or LF.
    public var message: String {
        switch self {
        case .noRequest: "No request received"
        case .unterminatedRequest: "Connection closed before the end of the request line"
        // What a person typing into plain nc, ncat, socat or curl telnet:// sends:
        // say how to send CRLF instead.
        case .bareLineFeed: "Request line must end with CRLF, not a bare LF (use telnet, nc -C, ncat -C or socat's crlf option)"
        case .strayCarriageReturn: "Carriage return not followed by line feed"
        case .controlByte: "Service name contains a control character"
        case .whiteSpace: "Service name contains white space"
        case .nonASCIIByte: "Service name contains a non-ASCII byte"
        case .emptyName: "Empty service name"
        case .nameTooLong: "Service name longer than \(RequestParser.maximumNameLength) bytes"
        case .timedOut: "Timed out waiting for the request"
        case .nestingTooDeep: "Too many nested tcpmux requests"
        case .unknownService: "Service not available"
        case .tableUnavailable: "Service table unavailable"
        case .handOffFailed: "Service temporarily unavailable"
        }
    }
}
