import TCPMUXProtocol

/// The user and groups an exec'd service runs as (setgroups, setgid, setuid).
public struct Credentials: Equatable, Sendable {
    public let user: String
    public let uid: UInt32
    public let gid: UInt32
    public let groups: [UInt32]

    public init(user: String, uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.user = user
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}

/// A program that takes over the connection on fd 0, 1 and 2, as under inetd.
public struct Program: Equatable, Sendable {
    /// Absolute.
    public let path: String
    /// argv, argv[0] included.
    public let arguments: [String]
    /// nil: run as the server runs (only when the server is not root).
    public let credentials: Credentials?

    public init(path: String, arguments: [String], credentials: Credentials?) {
        self.path = path
        self.arguments = arguments
        self.credentials = credentials
    }
}

/// A local daemon the connection is relayed to.
public enum ForwardTarget: Equatable, Sendable, CustomStringConvertible {
    case tcp(IPAddress, port: UInt16)
    case unix(path: String)

    /// `192.0.2.1:80`, `[::1]:80` or an absolute path.
    public init?(_ text: String) {
        if text.hasPrefix("/") {
            // sockaddr_un holds 108 bytes, the terminating NUL included.
            guard text.utf8.count < 108, !text.utf8.contains(0) else { return nil }
            self = .unix(path: text)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = decimal(text[text.index(after: colon)...], as: UInt16.self),
              port > 0 else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = host.dropFirst().dropLast()
            guard let address = IPAddress(String(host)), !address.isIPv4 else { return nil }
            self = .tcp(address, port: port)
        } else {
            guard let address = IPAddress(String(host)), address.isIPv4 else { return nil }
            self = .tcp(address, port: port)
        }
    }

    public var description: String {
        switch self {
        case .tcp(let address, let port): address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
        case .unix(let path): path
        }
    }
}

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

/// Who may ask for HELP at all.
public struct HelpPolicy: Equatable, Sendable {
    public var enabled = true
    public var access = Access()

    public init(enabled: Bool = true, access: Access = Access()) {
        self.enabled = enabled
        self.access = access
    }
}

/// The services a client may select, in the order HELP lists them.
public struct ServiceTable: Equatable, Sendable {
    public let services: [Service]
    public let help: HelpPolicy

    public enum Error: Swift.Error, Equatable {
        /// Names are compared case-insensitively, so `Echo` and `echo` collide.
        case duplicateName(ServiceName)
        /// HELP is the protocol's own request, never a service.
        case reservedName(ServiceName)
    }

    public init(_ services: [Service], help: HelpPolicy = HelpPolicy()) throws(Error) {
        for (index, service) in services.enumerated() {
            if service.name == .help { throw .reservedName(service.name) }
            if services[..<index].contains(where: { $0.name == service.name }) {
                throw .duplicateName(service.name)
            }
        }
        self.services = services
        self.help = help
    }

    /// The table used when no configuration is given: the seed's, one service,
    /// `tcpmux`, whose protocol is TCPMUX again.
    public static let builtIn = try! ServiceTable([Service(name: ServiceName("tcpmux")!, handOff: .tcpmux)])

    /// The service a request selects. A linear scan: tables are small, and it
    /// spares start-up the hashing seed a Dictionary would need.
    public func service(named name: ServiceName) -> Service? {
        services.first { $0.name.key == name.key }
    }

    /// What HELP shows this client: the services it may use that are not hidden.
    public func helpList(for endpoints: Endpoints) -> [ServiceName] {
        services.filter { !$0.hidden && $0.access.allows(endpoints) }.map { $0.name }
    }
}
