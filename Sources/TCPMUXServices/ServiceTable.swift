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

    /// Indices of `services` in the order of their names' keys (ties in file
    /// order): lookup is a binary search, and duplicates are neighbours. Sorted
    /// rather than hashed: a Dictionary would need the hashing seed, a cost
    /// every connection pays at start-up, and a sort is O(n log n) either way.
    private let order: [Int]

    public init(_ services: [Service], help: HelpPolicy = HelpPolicy()) throws(Error) {
        let order = ServiceTable.sortedByName(services)
        if let reserved = services.first(where: { $0.name == .help }) { throw .reservedName(reserved.name) }
        if let duplicate = ServiceTable.duplicates(services, order: order).first {
            throw .duplicateName(services[duplicate.later].name)
        }
        self.services = services
        self.help = help
        self.order = order
    }

    /// The indices of `services`, sorted by name key, then by index.
    static func sortedByName(_ services: [Service]) -> [Int] {
        services.indices.sorted { left, right in
            let a = services[left].name.key, b = services[right].name.key
            return a == b ? left < right : a.lexicographicallyPrecedes(b)
        }
    }

    /// Every service whose name an earlier one already has, with that earlier
    /// one's index, in the order of `order`.
    static func duplicates(_ services: [Service], order: [Int]) -> [(later: Int, first: Int)] {
        var found: [(later: Int, first: Int)] = []
        var first = 0
        for position in order.indices.dropFirst() {
            if services[order[position]].name.key == services[order[first]].name.key {
                found.append((order[position], order[first]))
            } else {
                first = position
            }
        }
        return found
    }

    public static func == (lhs: ServiceTable, rhs: ServiceTable) -> Bool {
        lhs.services == rhs.services && lhs.help == rhs.help
    }

    /// The table used when no configuration is given: the seed's, one service,
    /// `tcpmux`, whose protocol is TCPMUX again.
    public static let builtIn = try! ServiceTable([Service(name: ServiceName("tcpmux")!, handOff: .tcpmux)])

    /// The service a request selects: a binary search of the names in key order.
    public func service(named name: ServiceName) -> Service? {
        var low = 0, high = order.count
        while low < high {
            let middle = (low + high) / 2
            if services[order[middle]].name.key.lexicographicallyPrecedes(name.key) { low = middle + 1 } else { high = middle }
        }
        guard low < order.count, services[order[low]].name.key == name.key else { return nil }
        return services[order[low]]
    }

    /// What HELP shows this client: the services it may use that are not hidden.
    public func helpList(for endpoints: Endpoints) -> [ServiceName] {
        services.filter { !$0.hidden && $0.access.allows(endpoints) }.map { $0.name }
    }
}
