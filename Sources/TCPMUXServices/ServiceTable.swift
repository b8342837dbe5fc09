import TCPMUXProtocol

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
