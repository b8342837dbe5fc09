import TCPMUXProtocol

/// The decisions of one TCPMUX connection, from request to reply. Pure: the shell
/// reads the requests and writes the replies.
public struct Session: Sendable {
    /// How many `tcpmux` requests may nest on one connection; each costs a line
    /// of input, so the bound keeps one connection's work finite.
    public static let maximumNesting = 16

    public enum Next: Equatable, Sendable {
        /// Read the next request on the same connection (nested TCPMUX).
        case readRequest
        /// Half-close, drain and exit.
        case close
    }

    public struct Decision: Equatable, Sendable {
        public let reply: Reply
        public let next: Next
        /// What the log says of the decision.
        public let summary: String
    }

    public let table: ServiceTable
    public private(set) var nesting = 0

    public init(table: ServiceTable) {
        self.table = table
    }

    /// The answer to one parsed request line.
    public mutating func decide(_ outcome: RequestParser.Outcome) -> Decision {
        switch outcome {
        case .rejected(let rejection):
            return refuse(rejection)
        case .request(let name) where name == .help:
            let names = table.services.map(\.name)
            return Decision(reply: .serviceList(names), next: .close, summary: "help (\(names.count) listed)")
        case .request(let name):
            guard let service = table.service(named: name) else { return refuse(.unknownService) }
            switch service.handOff {
            case .tcpmux:
                guard nesting < Self.maximumNesting else { return refuse(.nestingTooDeep) }
                nesting += 1
                return Decision(reply: .positive(service.acceptance), next: .readRequest,
                                summary: "accepted \(service.name), nested TCPMUX")
            }
        }
    }

    /// The answer when the request does not arrive in time or at all.
    public func refuse(_ rejection: Rejection) -> Decision {
        Decision(reply: .negative(rejection), next: .close, summary: "rejected: \(rejection.message)")
    }
}
