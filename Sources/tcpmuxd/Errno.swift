// errno, read in one place and carried as a typed value (as apple/swift-system's
// Errno and valueOrErrno), and the one retry on EINTR.
import CSystem

/// What a failed system call left in errno; `description` is strerror(3)'s text.
struct Errno: Error, Equatable, CustomStringConvertible {
    let rawValue: Int32
    init(_ rawValue: Int32) { self.rawValue = rawValue }

    /// The one read of errno in the program.
    fileprivate static var current: Errno { Errno(csystem_errno()) }

    var description: String { String(cString: strerror(rawValue)) }

    static let interrupted = Errno(EINTR)
    static let wouldBlock = Errno(EAGAIN)
    static let inProgress = Errno(EINPROGRESS)
    static let alreadyInProgress = Errno(EALREADY)
    static let timedOut = Errno(ETIMEDOUT)
    static let notSocket = Errno(ENOTSOCK)
    static let noEntry = Errno(ENOENT)
}

/// The result of a system call that returns -1 and sets errno on failure, or
/// that errno. A call interrupted by a signal (EINTR) is made again: that is no
/// failure of the call, and no caller wants to see it.
func valueOrErrno<Value: FixedWidthInteger>(_ call: () -> Value) throws(Errno) -> Value {
    while true {
        let value = call()
        if value != -1 { return value }
        let error = Errno.current
        if error != .interrupted { throw error }
    }
}

/// As valueOrErrno, for a call whose result is only success or failure.
func nothingOrErrno<Value: FixedWidthInteger>(_ call: () -> Value) throws(Errno) {
    _ = try valueOrErrno(call)
}

/// As valueOrErrno, with the errno wrapped in the caller's own error type.
func valueOrFailure<Value: FixedWidthInteger, Failure: Error>(_ failure: (Errno) -> Failure, _ call: () -> Value) throws(Failure) -> Value {
    do throws(Errno) { return try valueOrErrno(call) } catch { throw failure(error) }
}

/// As nothingOrErrno, with the errno wrapped in the caller's own error type.
func nothingOrFailure<Value: FixedWidthInteger, Failure: Error>(_ failure: (Errno) -> Failure, _ call: () -> Value) throws(Failure) {
    _ = try valueOrFailure(failure, call)
}
