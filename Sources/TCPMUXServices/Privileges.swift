/// Who the server is while it reads the client's bytes, decided from the table
/// before the first byte is read: as little as the configured services allow.
///
/// Each hand-off has its own identity, whatever else the table holds: an exec
/// service runs as its `user=`; a forward, HELP, every refusal and the drain run
/// as the unprivileged user (`-u`, default nobody).
public enum PrivilegePlan: Equatable, Sendable {
    /// Not root: nothing to give up.
    case unchanged
    /// All ids, for good: real, effective and saved, and the groups.
    case become(Credentials)
    /// Effective ids only, root kept in the saved uid: an exec service runs as
    /// another user than the unprivileged one, and only the request says which.
    /// Root is given up for good as soon as the decision is made.
    case lowerUntilDecided(Credentials)

    public static func plan(runningAsRoot: Bool, table: ServiceTable?, unprivileged: Credentials) -> PrivilegePlan {
        guard runningAsRoot else { return .unchanged }
        let needsSwitch = table?.execCredentials.contains { $0 != unprivileged } ?? false
        return needsSwitch ? .lowerUntilDecided(unprivileged) : .become(unprivileged)
    }

    /// What the process holds once the plan is carried out.
    public var state: PrivilegeState {
        switch self {
        case .unchanged: .notRoot
        case .become(let credentials): .settled(credentials)
        case .lowerUntilDecided(let credentials): .lowered(credentials)
        }
    }
}

extension ServiceTable {
    /// The distinct users and groups exec services run as.
    public var execCredentials: [Credentials] {
        var result: [Credentials] = []
        for service in services {
            if case .exec(let program) = service.handOff, let credentials = program.credentials, !result.contains(credentials) {
                result.append(credentials)
            }
        }
        return result
    }
}
