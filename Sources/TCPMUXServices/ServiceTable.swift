import TCPMUXProtocol

/// What happens to the connection once a service is selected.
public enum HandOff: Equatable, Sendable {
    /// The server answers `+` and TCPMUX starts again on the same connection: the
    /// next line is a new request (the seed's only service).
    case tcpmux
}

public struct Service: Equatable, Sendable {
    public let name: ServiceName
    public let handOff: HandOff
    /// The text after the server's `+`.
    public let acceptance: String

    public init(name: ServiceName, handOff: HandOff, acceptance: String = "OK") {
        self.name = name
        self.handOff = handOff
        self.acceptance = acceptance
    }
}

/// The services a client may select, in the order HELP lists them.
public struct ServiceTable: Equatable, Sendable {
    public let services: [Service]

    public enum Error: Swift.Error, Equatable {
        /// Names are compared case-insensitively, so `Echo` and `echo` collide.
        case duplicateName(ServiceName)
        /// HELP is the protocol's own request, never a service.
        case reservedName(ServiceName)
    }

    public init(_ services: [Service]) throws(Error) {
        for (index, service) in services.enumerated() {
            if service.name == .help { throw .reservedName(service.name) }
            if services[..<index].contains(where: { $0.name == service.name }) {
                throw .duplicateName(service.name)
            }
        }
        self.services = services
    }

    /// The table used when no configuration is given: the seed's, one service,
    /// `tcpmux`, whose protocol is TCPMUX again.
    public static let builtIn = try! ServiceTable([Service(name: ServiceName("tcpmux")!, handOff: .tcpmux)])

    /// The service a request selects. A linear scan: tables are small, and it
    /// spares start-up the hashing seed a Dictionary would need.
    public func service(named name: ServiceName) -> Service? {
        services.first { $0.name.key == name.key }
    }
}
