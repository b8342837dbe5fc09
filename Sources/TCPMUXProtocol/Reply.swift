/// What the server writes in answer to a request (RFC 1078).
public enum Reply: Equatable, Sendable {
    /// `+` and an optional explanation: the selected protocol starts after it.
    case positive(String)
    /// `-` and the reason: the connection closes after it.
    case negative(Rejection)
    /// The answer to HELP: the service names, one per line, and no status line.
    case serviceList([ServiceName])

    /// The exact bytes on the wire; every line ends in CRLF.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        func line(_ text: some Sequence<UInt8>) {
            out.append(contentsOf: text)
            out.append(contentsOf: [carriageReturn, lineFeed])
        }
        switch self {
        case .positive(let text): line([UInt8(ascii: "+")] + printable(text))
        case .negative(let rejection): line([UInt8(ascii: "-")] + printable(rejection.message))
        case .serviceList(let names): names.forEach { line($0.bytes) }
        }
        return out
    }
}

/// A reply's text as printable ASCII: any other byte becomes `?`, so a reply is
/// always exactly one line with no NUL (xinetd sends `+Go\r\n\0`).
func printable(_ text: String) -> [UInt8] {
    text.utf8.map { (0x20...0x7E).contains($0) ? $0 : UInt8(ascii: "?") }
}
