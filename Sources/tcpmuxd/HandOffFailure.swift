// Why a hand-off could not be carried out.

/// Why an exec or forward hand-off failed: what was being done, and the errno
/// if a system call refused. Before the `+`, the client gets
/// `Session.failedHandOff`; the log gets this.
struct HandOffFailure: Error, CustomStringConvertible {
    let attempt: String
    let errno: Errno?

    init(_ attempt: String, _ errno: Errno? = nil) {
        self.attempt = attempt
        self.errno = errno
    }

    var description: String { errno.map { "\(attempt): \($0)" } ?? attempt }
}
