/// Who the server is while it reads the client's bytes, decided from the table
/// before the first byte is read: as little as the configured services allow.
public enum PrivilegePlan: Equatable, Sendable {
    /// Not root: nothing to give up.
    case unchanged
    /// All ids, for good: real, effective and saved, and the groups.
    case become(Credentials)
    /// Effective ids only, root kept in the saved uid: the table has exec
    /// services of more than one user (or of root), and only the selected
    /// one's can be switched to once the request is read. The saved root is
    /// given up for good before any hand-off.
    case lowerUntilSelected(Credentials)

    public static func plan(runningAsRoot: Bool, table: ServiceTable?, unprivileged: Credentials) -> PrivilegePlan {
        guard runningAsRoot else { return .unchanged }
        let users = table?.execCredentials ?? []
        switch users.count {
        case 0: return .become(unprivileged)
        // One user for every exec service: become it now, and exec needs no switch.
        case 1 where users[0].uid != 0: return .become(users[0])
        default: return .lowerUntilSelected(unprivileged)
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
