import TCPMUXProtocol

/// What happens to the connection once a service is selected.
public enum HandOff: Equatable, Sendable {
    /// The server answers `+` and TCPMUX starts again on the same connection: the
    /// next line is a new request (the seed's only service).
    case tcpmux
    /// The server execs a program with the connection on fd 0, 1 and 2.
    case exec(Program)
    /// The server connects to a local daemon and relays both directions.
    case forward(ForwardTarget)
}

/// Who writes the `+` (FreeBSD's `tcpmux/+name` vs `tcpmux/name`, xinetd's
/// TCPMUXPLUS vs TCPMUX).
public enum Acknowledgement: Equatable, Sendable {
    /// The server, with this text after the `+`, once the hand-off is ready.
    case server(String)
    /// The service itself; the server writes nothing.
    case service
}

public struct Service: Equatable, Sendable {
    public let name: ServiceName
    public let handOff: HandOff
    public let acknowledgement: Acknowledgement
    public let access: Access
    /// Left out of HELP (it can still be selected by name).
    public let hidden: Bool
    /// `forward` only: the PROXY protocol header written to the backend first.
    public let proxyHeader: ProxyHeader.Version?

    public init(name: ServiceName, handOff: HandOff, acknowledgement: Acknowledgement = .server("OK"),
                access: Access = Access(), hidden: Bool = false, proxyHeader: ProxyHeader.Version? = nil) {
        self.name = name
        self.handOff = handOff
        self.acknowledgement = acknowledgement
        self.access = access
        self.hidden = hidden
        self.proxyHeader = proxyHeader
    }

    /// The server's `+` line, if the server writes one.
    public var acceptance: Reply? {
        if case .server(let text) = acknowledgement { return .positive(text) }
        return nil
    }
}
