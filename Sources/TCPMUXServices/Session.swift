import TCPMUXProtocol

/// The decisions of one TCPMUX connection, from request to reply. Pure: the shell
/// reads the requests, writes the replies and performs the hand-offs.
public struct Session: Sendable {
    /// How many `tcpmux` requests may nest on one connection; each costs a line
    /// of input, so the bound keeps one connection's work finite.
    public static let maximumNesting = 16

    public enum Next: Equatable, Sendable {
        /// Read the next request on the same connection (nested TCPMUX).
        case readRequest
        /// Half-close, drain and exit.
        case close
        /// Exec the service's program. Only once every check passed, write
        /// `acceptance` (nil: the program writes its own `+`) and exec; a
        /// hand-off that cannot be prepared gets `failedHandOff` instead.
        case exec(Program, acceptance: Reply?, service: Service)
        /// Connect to the service's daemon. Only once it answered (and took the
        /// PROXY header, if the service has one), write `acceptance` and relay;
        /// a backend that cannot be reached gets `failedHandOff` instead.
        case forward(ForwardTarget, acceptance: Reply?, service: Service)
    }

    /// The reply to a hand-off that could not be prepared: decided before any `+`.
    public static let failedHandOff = Reply.negative(.handOffFailed)

    public struct Decision: Equatable, Sendable {
        /// nil for a hand-off: its `+` waits until the hand-off is ready.
        public let reply: Reply?
        public let next: Next
        /// What the log says of the decision.
        public let summary: String
    }

    /// nil when the configuration could not be loaded: every request is refused.
    public let table: ServiceTable?
    public let endpoints: Endpoints
    public private(set) var nesting = 0

    public init(table: ServiceTable?, endpoints: Endpoints = Endpoints(client: nil, local: nil)) {
        self.table = table
        self.endpoints = endpoints
    }

    /// The answer to one parsed request line.
    public mutating func decide(_ outcome: RequestParser.Outcome) -> Decision {
        switch outcome {
        case .rejected(let rejection): refuse(rejection)
        case .request(let name): decide(request: name)
        }
    }

    private mutating func decide(request name: ServiceName) -> Decision {
        guard let table else { return refuse(.tableUnavailable) }
        if name == .help {
            guard table.help.enabled, table.help.access.allows(endpoints) else { return refuse(.unknownService) }
            let names = table.helpList(for: endpoints)
            return Decision(reply: .serviceList(names), next: .close, summary: "help (\(names.count) listed)")
        }
        // A client the service does not allow gets the same line as for a name
        // that does not exist, so a refusal does not reveal the service.
        guard let service = table.service(named: name), service.access.allows(endpoints) else {
            return refuse(.unknownService)
        }
        switch service.handOff {
        case .tcpmux:
            guard nesting < Self.maximumNesting else { return refuse(.nestingTooDeep) }
            nesting += 1
            return Decision(reply: service.acceptance ?? .positive(""), next: .readRequest,
                            summary: "accepted \(service.name), nested TCPMUX")
        case .exec(let program):
            return Decision(reply: nil, next: .exec(program, acceptance: service.acceptance, service: service),
                            summary: "selected \(service.name)")
        case .forward(let target):
            return Decision(reply: nil, next: .forward(target, acceptance: service.acceptance, service: service),
                            summary: "selected \(service.name)")
        }
    }

    /// The answer when the request does not arrive in time or at all.
    public func refuse(_ rejection: Rejection) -> Decision {
        Decision(reply: .negative(rejection), next: .close, summary: "rejected: \(rejection.message)")
    }
}
