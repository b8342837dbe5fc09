// Giving up root: before the first byte of the request (PrivilegePlan), and for
// good before any hand-off.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import TCPMUXServices

/// Before the first byte of the request: the plan for this table, carried out.
/// Returns who a root server gives root up to for good before a hand-off other
/// than exec (nil when not root).
func giveUpPrivileges(_ options: Options, table: ServiceTable?) -> Result<Credentials?, HandOffFailure> {
    guard geteuid() == 0 else { return .success(nil) }
    // The default, nobody, is the kernel's overflow ids, 65534, without reading
    // /etc/passwd and /etc/group: that costs every connection about 0.1 ms
    // (bench/run), and 65534 is unprivileged wherever nobody is not it.
    let found = options.unprivilegedUser == Options().unprivilegedUser
        ? .success(Credentials(user: "nobody", uid: 65534, gid: 65534, groups: [65534]))
        : readAccounts().credentials(user: options.unprivilegedUser, group: nil)
    switch found {
    case .failure(let error):
        return .failure(HandOffFailure("-u \(options.unprivilegedUser): \(error)"))
    case .success(let unprivileged):
        return apply(PrivilegePlan.plan(runningAsRoot: true, table: table, unprivileged: unprivileged)).map { unprivileged }
    }
}

/// Carries out the plan made from the table.
private func apply(_ plan: PrivilegePlan) -> Result<Void, HandOffFailure> {
    switch plan {
    case .unchanged: .success(())
    case .become(let credentials): become(credentials)
    case .lowerUntilSelected(let credentials): lower(to: credentials)
    }
}

/// Real, effective and saved ids and the groups, for good (setgroups, setgid,
/// setuid, each checked, then verified: every id changed, and root cannot be
/// had back). From a lowered state, root is regained first, to be given up whole.
func become(_ credentials: Credentials) -> Result<Void, HandOffFailure> {
    if geteuid() != 0 && getuid() == 0 && seteuid(0) != 0 {
        return .failure(HandOffFailure("seteuid 0: \(Errno.current)"))
    }
    if geteuid() != 0 {
        // Not root: only who we already are.
        guard credentials.uid == geteuid(), credentials.gid == getegid() else {
            return .failure(HandOffFailure("cannot become user \(credentials.user): the server is not root"))
        }
        return .success(())
    }
    var groups = credentials.groups.map { gid_t($0) }
    guard setgroups(groups.count, &groups) == 0 else { return .failure(HandOffFailure("setgroups: \(Errno.current)")) }
    guard setgid(gid_t(credentials.gid)) == 0 else { return .failure(HandOffFailure("setgid \(credentials.gid): \(Errno.current)")) }
    guard setuid(uid_t(credentials.uid)) == 0 else { return .failure(HandOffFailure("setuid \(credentials.uid): \(Errno.current)")) }
    guard getuid() == credentials.uid, geteuid() == credentials.uid,
          getgid() == credentials.gid, getegid() == credentials.gid,
          credentials.uid == 0 || setuid(0) == -1 else {
        return .failure(HandOffFailure("user switch to \(credentials.user) did not hold"))
    }
    return .success(())
}

/// Effective ids and groups only; the saved uid stays root, for `become` later.
private func lower(to credentials: Credentials) -> Result<Void, HandOffFailure> {
    var groups = credentials.groups.map { gid_t($0) }
    guard setgroups(groups.count, &groups) == 0 else { return .failure(HandOffFailure("setgroups: \(Errno.current)")) }
    guard setegid(gid_t(credentials.gid)) == 0 else { return .failure(HandOffFailure("setegid \(credentials.gid): \(Errno.current)")) }
    guard seteuid(uid_t(credentials.uid)) == 0 else { return .failure(HandOffFailure("seteuid \(credentials.uid): \(Errno.current)")) }
    return .success(())
}

/// Whether root is still held, effective or saved (a lowered server, or one that
/// regained root to check an exec service): then it must be given up for good
/// before anything but that exec switch.
var holdsRoot: Bool { getuid() == 0 || geteuid() == 0 }

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
