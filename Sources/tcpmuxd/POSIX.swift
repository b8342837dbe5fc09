// The one layer that touches file descriptors, clocks, signals and syslog.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#else
#error("in.tcpmuxd needs Glibc or Musl")
#endif
import CommandLineArguments
import TCPMUXServices

/// The arguments after the program name. Not CommandLine.arguments: the static
/// Swift runtime reads those through /proc and returns none when no descriptor
/// is free at start-up, which would silently drop `-f` (fail open).
func commandLineArguments() -> [String] {
    let arguments = command_line_arguments()
    return (1..<max(Int(command_line_count()), 1)).map { String(cString: arguments![$0]!) }
}

/// An errno value; `description` is strerror's text.
struct Errno: Error, CustomStringConvertible {
    let code: Int32
    static var current: Errno { Errno(code: errno) }
    var description: String { String(cString: strerror(code)) }
}

/// Runs a system call again while it fails with EINTR.
func retryingOnInterrupt<Result: BinaryInteger>(_ call: () -> Result) -> Result {
    while true {
        let result = call()
        if result != -1 || errno != EINTR { return result }
    }
}

/// A point in time on the monotonic clock (`clock_gettime(CLOCK_MONOTONIC)`),
/// so that a change of the wall clock cannot stretch or cut a deadline.
struct Deadline {
    private let nanoseconds: Int64

    static var now: Deadline { Deadline(nanoseconds: monotonicNanoseconds()) }

    static func after(seconds: Int) -> Deadline {
        Deadline(nanoseconds: monotonicNanoseconds() + Int64(seconds) * 1_000_000_000)
    }

    private static func monotonicNanoseconds() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    /// Milliseconds since this instant, for the log.
    var elapsedMilliseconds: Int64 { (Deadline.monotonicNanoseconds() - nanoseconds) / 1_000_000 }

    /// What is left, in whole milliseconds rounded up, as poll(2) takes it; 0 once passed.
    var remainingMilliseconds: Int32 {
        let left = nanoseconds - Deadline.monotonicNanoseconds()
        return left <= 0 ? 0 : Int32(clamping: (left + 999_999) / 1_000_000)
    }
}

/// Waits until `fd` is ready for `events` or the deadline passes. True if ready
/// (or in error or hung up: the following call will tell). A failing poll(2)
/// counts as the deadline passing: the blocking call after it could otherwise
/// wait without one.
private func wait(for events: Int32, on fd: Int32, before deadline: Deadline) -> Bool {
    while true {
        let timeout = deadline.remainingMilliseconds
        if timeout == 0 { return false }
        var entry = pollfd(fd: fd, events: Int16(events), revents: 0)
        let ready = poll(&entry, 1, timeout)
        if ready > 0 { return true }
        if ready == -1 && errno != EINTR { return false }
    }
}

enum ReadResult {
    case byte(UInt8)
    case endOfInput
    case timedOut
    case failed(Errno)
}

/// Reads exactly one byte (read(2) of length 1), so that nothing past the request
/// line leaves the socket: those bytes belong to the selected service.
func readByte(from fd: Int32, before deadline: Deadline) -> ReadResult {
    var byte: UInt8 = 0
    while true {
        guard wait(for: POLLIN, on: fd, before: deadline) else { return .timedOut }
        let count = retryingOnInterrupt { read(fd, &byte, 1) }
        switch count {
        case 1: return .byte(byte)
        case 0: return .endOfInput
        default:
            if errno == EAGAIN || errno == EWOULDBLOCK { continue }
            return .failed(.current)
        }
    }
}

/// Writes all of `bytes` (write(2), looping over partial writes).
func writeAll(_ bytes: [UInt8], to fd: Int32, before deadline: Deadline) -> Result<Void, Errno> {
    var written = 0
    while written < bytes.count {
        guard wait(for: POLLOUT, on: fd, before: deadline) else { return .failure(Errno(code: ETIMEDOUT)) }
        let count = bytes.withUnsafeBytes { buffer in
            retryingOnInterrupt { write(fd, buffer.baseAddress! + written, buffer.count - written) }
        }
        if count >= 0 {
            written += count
        } else if errno != EAGAIN && errno != EWOULDBLOCK {
            return .failure(.current)
        }
    }
    return .success(())
}

/// Ends our side of the conversation without losing the last reply: half-close
/// (shutdown(2) SHUT_WR, or close(2) when the output is a pipe), then read and
/// discard what the client still sends until it closes, the deadline passes or
/// `limit` bytes went by. Exiting with unread input would make the kernel reset
/// the connection, and the client could lose our reply.
func closeConnection(input: Int32, output: Int32, drainUntil deadline: Deadline, limit: Int) {
    if shutdown(output, Int32(SHUT_WR)) == -1 && errno == ENOTSOCK {
        close(output)
    }
    var buffer = [UInt8](repeating: 0, count: 4096)
    var drained = 0
    while drained < limit, wait(for: POLLIN, on: input, before: deadline) {
        let count = buffer.withUnsafeMutableBytes { space in
            retryingOnInterrupt { read(input, space.baseAddress!, space.count) }
        }
        if count <= 0 { break }
        drained += count
    }
}

/// An address and port of a TCP connection.
struct SocketAddress: CustomStringConvertible {
    let address: IPAddress
    let port: UInt16

    /// `192.0.2.1:1234` or `[2001:db8::1]:1234`.
    var description: String { address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }
}

/// The far end (getpeername(2)) or our end (getsockname(2)) of the connection on
/// `fd`; nil when `fd` is not an IP socket (a pipe, when run from a shell).
func socketAddress(of fd: Int32, peer: Bool) -> SocketAddress? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let status = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
        }
    }
    guard status == 0 else { return nil }
    let family = Int32(storage.ss_family)
    return withUnsafeBytes(of: storage) { raw in
        switch family {
        case AF_INET:
            let address = raw.load(as: sockaddr_in.self)
            return withUnsafeBytes(of: address.sin_addr) { ip in
                IPAddress(bytes: Array(ip)).map { SocketAddress(address: $0, port: UInt16(bigEndian: address.sin_port)) }
            }
        case AF_INET6:
            let address = raw.load(as: sockaddr_in6.self)
            return withUnsafeBytes(of: address.sin6_addr) { ip in
                IPAddress(bytes: Array(ip)).map { SocketAddress(address: $0, port: UInt16(bigEndian: address.sin6_port)) }
            }
        default:
            return nil
        }
    }
}

/// Keeps a client that closed early from killing us with SIGPIPE: writes then
/// fail with EPIPE, which the caller handles.
func ignoreBrokenPipes() {
    signal(SIGPIPE, SIG_IGN)
}

/// The system log (LOG_DAEMON). Under inetd, fd 2 is the client's socket, so this
/// is the only place diagnostics go; `copyToStandardError` (LOG_PERROR) is for
/// interactive runs.
enum SystemLog {
    private static let identity: StaticString = "in.tcpmuxd"

    static func open(copyToStandardError: Bool) {
        let ident = UnsafeRawPointer(identity.utf8Start).assumingMemoryBound(to: CChar.self)
        openlog(ident, LOG_PID | (copyToStandardError ? LOG_PERROR : 0), LOG_DAEMON)
    }

    static func info(_ message: String) { write(LOG_INFO, message) }
    static func error(_ message: String) { write(LOG_ERR, message) }

    /// The message goes in as the format with each `%` doubled, and no arguments:
    /// the same line as `"%s"` and the message, without building a CVarArg list,
    /// whose run-time conformance checks cost more than the rest of a connection.
    private static func write(_ priority: Int32, _ message: String) {
        var format: [CChar] = []
        format.reserveCapacity(message.utf8.count + 1)
        for byte in message.utf8 {
            // "%s" stops at a NUL; so does the format.
            if byte == 0 { break }
            if byte == UInt8(ascii: "%") { format.append(CChar(bitPattern: byte)) }
            format.append(CChar(bitPattern: byte))
        }
        format.append(0)
        withVaList([]) { vsyslog(priority, format, $0) }
    }
}
