// The system log: under inetd fd 2 is the client's socket, so this is the only
// place diagnostics go.
import CSystem

/// syslog(3), facility LOG_DAEMON; `copyToStandardError` (LOG_PERROR) is for
/// interactive runs.
enum SystemLog {
    private static let identity: StaticString = "in.tcpmuxd"

    static func open(copyToStandardError: Bool) {
        let ident = UnsafeRawPointer(identity.utf8Start).assumingMemoryBound(to: CChar.self)
        openlog(ident, LOG_PID | (copyToStandardError ? LOG_PERROR : 0), LOG_DAEMON)
    }

    static func info(_ message: String) { csystem_syslog(LOG_INFO, message) }
    static func error(_ message: String) { csystem_syslog(LOG_ERR, message) }
}
