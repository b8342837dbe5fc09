// Puts the real in.tcpmuxd behind a real TCP connection, as a `nowait` inetd does:
// the accepted socket on fd 0, 1 and 2. Anything the server wrote to stderr would
// therefore reach the client and break the exact-bytes comparisons.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

struct SystemCallError: Error, CustomStringConvertible {
    let call: String
    let code: Int32
    init(_ call: String) { self.call = call; self.code = errno }
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

@discardableResult
func check<T: BinaryInteger>(_ call: String, _ result: T) throws -> T {
    if result == -1 { throw SystemCallError(call) }
    return result
}

/// The binary under test: $TCPMUXD_BINARY (CI sets it to the static release
/// build), else the one `swift test` built beside this test bundle.
let serverBinary: String = {
    if let path = ProcessInfo.processInfo.environment["TCPMUXD_BINARY"], !path.isEmpty { return path }
    let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    return bundle.appendingPathComponent("in.tcpmuxd").path
}()

/// A monotonic clock reading in seconds.
func now() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

enum Endpoint {
    case ipv4(String)
    case ipv6(String)
}

/// A listening TCP socket on a loopback address and a free port.
func listeningSocket(_ endpoint: Endpoint = .ipv4("127.0.0.1")) throws -> Int32 {
    switch endpoint {
    case .ipv4(let host):
        let fd = try check("socket", socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &address.sin_addr)
        _ = try withUnsafePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try check("bind", bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)))
            }
        }
        try check("listen", listen(fd, 512))
        return fd
    case .ipv6(let host):
        let fd = try check("socket", socket(AF_INET6, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        inet_pton(AF_INET6, host, &address.sin6_addr)
        _ = try withUnsafePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try check("bind", bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)))
            }
        }
        try check("listen", listen(fd, 512))
        return fd
    }
}

/// Connects to a listening socket's own address (getsockname).
func connectSocket(to listener: Int32) throws -> Int32 {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = try withUnsafeMutablePointer(to: &storage) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            try check("getsockname", getsockname(listener, $0, &length))
        }
    }
    let fd = try check("socket", socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
    _ = try withUnsafePointer(to: &storage) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            try check("connect", connect(fd, $0, length))
        }
    }
    return fd
}

/// Descriptors are made close-on-exec under this lock, and children spawned under
/// it, so that no child inherits another test's socket (which would keep that
/// connection open past its close). Glibc's accept4 and pipe2 are not visible to
/// Swift here.
let spawnLock = NSLock()

/// Writing to a child that already exited (a usage error, say) must fail with
/// EPIPE, not kill the test runner with SIGPIPE.
let brokenPipesIgnored: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

/// Marks `fd` close-on-exec; call with spawnLock held.
func closeOnExec(_ fd: Int32) -> Int32 {
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    return fd
}

/// A child process started with posix_spawn: fd 0, 1, 2 as given, no other
/// descriptor inherited.
final class Child {
    let pid: pid_t
    private var exitStatus: Int32?

    init(_ arguments: [String], stdin: Int32, stdout: Int32, stderr: Int32) throws {
        _ = brokenPipesIgnored
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto itself would keep FD_CLOEXEC; go through a spare number.
        for (index, fd) in [stdin, stdout, stderr].enumerated() {
            posix_spawn_file_actions_adddup2(&actions, fd, Int32(100 + index))
        }
        for index in 0..<3 {
            posix_spawn_file_actions_adddup2(&actions, Int32(100 + index), Int32(index))
        }
        // As a superserver starts it: no signal blocked (the test runner's
        // threads block some, and a mask survives exec), none ignored.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        for signal in [SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2] {
            sigaddset(&signals, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = spawnLock.withLock { posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ) }
        if status != 0 { errno = status; throw SystemCallError("posix_spawn \(arguments[0])") }
        self.pid = pid
    }

    /// Waits for the exit, at most `timeout` seconds (then kills it and fails).
    /// Returns the exit status, or 128 + signal.
    func wait(timeout: Double = 15) -> Int32 {
        if let exitStatus { return exitStatus }
        let end = now() + timeout
        var status: Int32 = 0
        while true {
            let done = waitpid(pid, &status, WNOHANG)
            if done == pid { break }
            if now() > end {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                Issue.record("process \(pid) still running after \(timeout) s")
                return -1
            }
            usleep(2_000)
        }
        exitStatus = Child.decode(status)
        return exitStatus!
    }

    /// Whether it has exited (and is reaped), without waiting.
    var hasExited: Bool {
        if exitStatus != nil { return true }
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return false }
        exitStatus = Child.decode(status)
        return true
    }

    private static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7F
        return signal == 0 ? (status >> 8) & 0xFF : 128 + signal
    }
}

/// The client's side of a TCP connection: send, half-close, read to the end.
protocol ClientSocket: AnyObject {
    var client: Int32 { get }
}

/// How a read to the end of a connection ended.
enum ConnectionEnd: Equatable {
    case endOfStream
    case reset
    case timedOut
}

extension ClientSocket {
    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            try check("send", count)
            sent += count
        }
    }

    /// The socket's pending error (SO_ERROR): ECONNRESET or EPIPE once a reset arrived.
    func pendingError() -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(client, SOL_SOCKET, SO_ERROR, &error, &length)
        return error
    }

    /// Half-closes the client's side: the server sees end of input.
    func shutdownWrite() { shutdown(client, Int32(SHUT_WR)) }

    /// Closes with a TCP reset (SO_LINGER 0).
    func reset() {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(client, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        shutdown(client, Int32(SHUT_RDWR))
    }

    /// Reads until the server closes its side (or `timeout`): the exact bytes, and how it ended.
    func receiveAll(timeout: Double = 15) -> (bytes: [UInt8], end: ConnectionEnd) {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        let end = now() + timeout
        while true {
            let left = end - now()
            if left <= 0 { return (bytes, .timedOut) }
            var entry = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            if poll(&entry, 1, Int32(left * 1000) + 1) <= 0 { continue }
            let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if count == 0 { return (bytes, .endOfStream) }
            if count < 0 {
                if errno == EINTR { continue }
                return (bytes, .reset)
            }
            bytes += buffer[..<count]
        }
    }

    /// The whole reply as text, after checking the server closed cleanly.
    func replyText(timeout: Double = 15, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let (bytes, end) = receiveAll(timeout: timeout)
        #expect(end == .endOfStream, "the server closes with FIN, not a reset or silence", sourceLocation: sourceLocation)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One connection to a freshly spawned in.tcpmuxd, from the client's side.
final class Connection: ClientSocket {
    let client: Int32
    let server: Child
    let started = now()

    /// Starts in.tcpmuxd with `arguments` on an accepted loopback connection.
    init(_ arguments: [String] = [], endpoint: Endpoint = .ipv4("127.0.0.1")) throws {
        let listener = try listeningSocket(endpoint)
        defer { close(listener) }
        client = try connectSocket(to: listener)
        let accepted = try check("accept", spawnLock.withLock { closeOnExec(accept(listener, nil, nil)) })
        defer { close(accepted) }
        server = try Child([serverBinary] + arguments, stdin: accepted, stdout: accepted, stderr: accepted)
    }

    deinit { close(client) }

    /// Closes our side (so the server's drain ends) and returns its exit status.
    func finish(timeout: Double = 15) -> Int32 {
        shutdown(client, Int32(SHUT_RDWR))
        return server.wait(timeout: timeout)
    }
}

/// Sends `request` on a new connection, half-closes, and returns the exact reply
/// after checking the clean close and exit status 0.
func exchange(_ request: String, arguments: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let connection = try Connection(arguments)
    try connection.send(request)
    connection.shutdownWrite()
    let reply = connection.replyText(sourceLocation: sourceLocation)
    #expect(connection.finish() == 0, "exit status", sourceLocation: sourceLocation)
    return reply
}

/// Every line is printable ASCII ended by CRLF, with no NUL and no bare CR or LF.
func isPrintableLines(_ text: String) -> Bool {
    let bytes = Array(text.utf8)
    guard bytes.isEmpty || bytes.suffix(2) == [0x0D, 0x0A] else { return false }
    var index = 0
    while index < bytes.count {
        let byte = bytes[index]
        if byte == 0x0D {
            guard index + 1 < bytes.count, bytes[index + 1] == 0x0A else { return false }
            index += 2
            continue
        }
        guard (0x20...0x7E).contains(byte) else { return false }
        index += 1
    }
    return true
}
