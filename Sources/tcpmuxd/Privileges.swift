// Giving up root: before the first byte of the request (PrivilegePlan), and for
// good as soon as the request is decided (PrivilegeState): setgroups(2),
// setgid(2), setuid(2) and their effective-id forms.
import CSystem
import TCPMUXServices

/// Why the server could not change who it is (it then serves nothing as root):
/// what it tried, and the errno if a system call refused.
struct PrivilegeFailure: Error, CustomStringConvertible {
    let attempt: String
    let errno: Errno?

    init(_ attempt: String, _ errno: Errno? = nil) {
        self.attempt = attempt
        self.errno = errno
    }

    var description: String { errno.map { "\(attempt): \($0)" } ?? attempt }
}

/// The kernel's overflow ids, the default `-u nobody`, and where a `-u` that
/// names no account falls back to.
let overflowCredentials = Credentials(user: "nobody", uid: 65534, gid: 65534, groups: [65534])

/// Who a root server gives up root to (`-u`). The default, nobody, is the
/// kernel's overflow ids, 65534, without reading /etc/passwd and /etc/group:
/// that costs every connection about 0.1 ms (bench/run), and 65534 is
/// unprivileged wherever nobody is not it. A `-u` that cannot be resolved (an
/// unknown name, a number without a passwd entry, an unreadable /etc/passwd)
/// is logged and falls back to 65534, and the connection fails closed (nil
/// table): never served as root, never as a guess.
func unprivilegedCredentials(_ options: Options, table: inout ServiceTable?) -> Credentials {
    let user = options.unprivilegedUser
    guard user != Options().unprivilegedUser else { return overflowCredentials }
    let problem: String
    do throws(TableLoadError) {
        switch try readAccounts().credentials(user: user, group: nil) {
        case .success(let credentials): return credentials
        // -u takes no group: a number must be in /etc/passwd.
        case .failure where user.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }): problem = "no user \(user) in /etc/passwd"
        case .failure(let error): problem = error.description
        }
    } catch {
        problem = "cannot read the accounts: \(error)"
    }
    SystemLog.error("-u \(user): \(problem); serving as uid 65534, every request refused")
    table = nil
    return overflowCredentials
}

/// Carries out the plan made from the table, before the first byte is read.
func apply(_ plan: PrivilegePlan) throws(PrivilegeFailure) -> PrivilegeState {
    switch plan {
    case .unchanged: break
    case .become(let credentials): try setEveryId(credentials)
    case .lowerUntilDecided(let credentials): try lower(to: credentials)
    }
    return plan.state
}

/// Gives root up for good as `credentials`: from a lowered state root is
/// regained first, to be given up whole. A server that holds no root can only
/// stay who it is.
func settle(_ state: PrivilegeState, as credentials: Credentials) throws(PrivilegeFailure) -> PrivilegeState {
    switch state {
    case .lowered:
        try regainRoot()
        try setEveryId(credentials)
    case .settled(let current):
        guard credentials.uid == current.uid, credentials.gid == current.gid else {
            throw PrivilegeFailure("cannot become user \(credentials.user): root was given up to \(current.user)")
        }
    case .notRoot:
        guard credentials.uid == geteuid(), credentials.gid == getegid() else {
            throw PrivilegeFailure("cannot become user \(credentials.user): the server is not root")
        }
    }
    return state == .notRoot ? .notRoot : .settled(credentials)
}

/// Once the request is decided: root, if still held, is given up for good as
/// the unprivileged user for anything but an exec hand-off (PrivilegeState
/// says when). A server that cannot do so exits without another word: nothing
/// may run with root kept.
func settleDecided(_ privileges: inout PrivilegeState, after next: Session.Next) {
    guard let unprivileged = privileges.settling(after: next) else { return }
    do throws(PrivilegeFailure) { privileges = try settle(privileges, as: unprivileged) } catch {
        SystemLog.error("cannot give up privileges: \(error)")
        exit(1)
    }
}

/// From a lowered state: the effective ids and groups of `credentials`, root
/// still kept as the saved uid, so that the exec checks see what that user
/// sees and a failed check can still settle as the unprivileged user.
func assume(_ credentials: Credentials) throws(PrivilegeFailure) {
    try regainRoot()
    try lower(to: credentials)
}

/// Effective root back from the saved uid of a lowered server.
private func regainRoot() throws(PrivilegeFailure) {
    try nothingOrFailure({ PrivilegeFailure("seteuid 0", $0) }) { seteuid(0) }
}

/// Real, effective and saved ids and the groups, for good (setgroups, setgid,
/// setuid, each checked, then verified: every id changed, and root cannot be
/// had back). Needs effective root.
private func setEveryId(_ credentials: Credentials) throws(PrivilegeFailure) {
    try setGroups(credentials)
    try nothingOrFailure({ PrivilegeFailure("setgid \(credentials.gid)", $0) }) { setgid(gid_t(credentials.gid)) }
    try nothingOrFailure({ PrivilegeFailure("setuid \(credentials.uid)", $0) }) { setuid(uid_t(credentials.uid)) }
    guard getuid() == credentials.uid, geteuid() == credentials.uid,
          getgid() == credentials.gid, getegid() == credentials.gid,
          credentials.uid == 0 || setuid(0) == -1 else {
        throw PrivilegeFailure("user switch to \(credentials.user) did not hold")
    }
}

/// Effective ids and groups only; the saved uid stays root, to be given up for
/// good (`settle`) once the request is decided.
private func lower(to credentials: Credentials) throws(PrivilegeFailure) {
    try setGroups(credentials)
    try nothingOrFailure({ PrivilegeFailure("setegid \(credentials.gid)", $0) }) { setegid(gid_t(credentials.gid)) }
    try nothingOrFailure({ PrivilegeFailure("seteuid \(credentials.uid)", $0) }) { seteuid(uid_t(credentials.uid)) }
}

private func setGroups(_ credentials: Credentials) throws(PrivilegeFailure) {
    var groups = credentials.groups.map { gid_t($0) }
    try nothingOrFailure({ PrivilegeFailure("setgroups", $0) }) { setgroups(groups.count, &groups) }
}

/// No core files while serving: a core could hold what clients sent. Only the
/// soft limit is lowered; the limit returned is the one an exec'd service gets back.
func disableCoreDumps() -> rlimit {
    var saved = rlimit()
    getrlimit(Int32(RLIMIT_CORE.rawValue), &saved)
    var none = saved
    none.rlim_cur = 0
    setrlimit(Int32(RLIMIT_CORE.rawValue), &none)
    return saved
}
