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
        case .readRequest, .exec: return nil
        case .forward, .close: return unprivileged
        }
    }

    /// Who a refused exec hand-off answers and drains as: the unprivileged user
    /// of a lowered server (nil when root is no longer held).
    public var refusalIdentity: Credentials? {
        if case .lowered(let unprivileged) = self { unprivileged } else { nil }
    }
}
