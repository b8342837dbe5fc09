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

/// What the process holds, carried from the plan to the hand-off (never re-read
/// from the kernel: the value says what was done).
public enum PrivilegeState: Equatable, Sendable {
    /// Started without root: who it is is all it has.
    case notRoot
    /// Root given up for good: real, effective and saved ids are this user's.
    case settled(Credentials)
    /// Effective ids of this (unprivileged) user; root kept as the saved uid
    /// until the decision.
    case lowered(Credentials)

    /// Whether root can still be had back.
    public var holdsRoot: Bool {
        if case .lowered = self { true } else { false }
    }

    /// Who to become for good once the decision is `next`: the unprivileged user
    /// for anything but an exec hand-off, so that no refusal, HELP, timeout,
    /// drain or forward runs with root kept. nil when nothing changes now: the
    /// next request is still to be read, an exec switches to its own user
    /// around its checks, or root is no longer held.
    public func settling(after next: Session.Next) -> Credentials? {
        guard case .lowered(let unprivileged) = self else { return nil }
        switch next {
        case .readRequest: return nil
        case .handOff(let service):
            if case .exec = service.handOff { return nil }
            return unprivileged
        case .close: return unprivileged
        }
    }

    /// Who a refused exec hand-off answers and drains as: the unprivileged user
    /// of a lowered server (nil when root is no longer held).
    public var refusalIdentity: Credentials? {
        if case .lowered(let unprivileged) = self { unprivileged } else { nil }
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
