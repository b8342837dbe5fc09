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

/// The binary under test: $TCPMUXD_BINARY (CI sets it to the Embedded Swift
/// build), else the one `swift test` built beside this test bundle.
let serverBinary: String = {
    if let path = ProcessInfo.processInfo.environment["TCPMUXD_BINARY"], !path.isEmpty { return path }
    let bundle = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
    return bundle.appendingPathComponent("in.tcpmuxd").path
}()

/// Whether the binary under test is static (no PT_INTERP program header), as
/// the release build is.
let binaryIsStatic: Bool = {
    guard let data = FileManager.default.contents(atPath: serverBinary), data.count > 64 else { return false }
    let bytes = [UInt8](data.prefix(4096))
    func integer(_ offset: Int, _ size: Int) -> Int {
        (0..<size).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
    }
    let headers = integer(0x20, 8), size = integer(0x36, 2), count = integer(0x38, 2)
    return !(0..<count).contains { index in
        let offset = headers + index * size
        return offset + 4 <= bytes.count && integer(offset, 4) == 3  // PT_INTERP
    }
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
    var storage = sockaddr_storage()
    let length: Int
    switch endpoint {
    case .ipv4(let host):
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, host, &address.sin_addr)
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in.self) }
        length = MemoryLayout<sockaddr_in>.size
    case .ipv6(let host):
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        inet_pton(AF_INET6, host, &address.sin6_addr)
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: sockaddr_in6.self) }
        length = MemoryLayout<sockaddr_in6>.size
    }
    let fd = try check("socket", socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
    _ = try withUnsafePointer(to: &storage) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            try check("bind", bind(fd, $0, socklen_t(length)))
        }
    }
    try check("listen", listen(fd, 512))
    return fd
}

/// Connects to a listening socket's own address (getsockname), from `source`
/// (an IPv4 loopback address) if given.
func connectSocket(to listener: Int32, from source: String? = nil) throws -> Int32 {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    _ = try withUnsafeMutablePointer(to: &storage) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            try check("getsockname", getsockname(listener, $0, &length))
        }
    }
    let fd = try check("socket", socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
    if let source {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, source, &address.sin_addr)
        _ = try withUnsafePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                try check("bind", bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)))
            }
        }
    }
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

/// `count` pipes, [read end, write end] each, close-on-exec.
func closeOnExecPipes(_ count: Int) throws -> [[Int32]] {
    try (0..<count).map { _ in
        var ends: [Int32] = [0, 0]
        try spawnLock.withLock {
            try check("pipe", pipe(&ends))
            ends.forEach { _ = closeOnExec($0) }
        }
        return ends
    }
}

/// A child process started with posix_spawn: fd 0, 1, 2 as given, no other
/// descriptor inherited.
final class Child {
    let pid: pid_t
    private var exitStatus: Int32?

    /// `blockedSignals`: the signal mask the child starts with (empty by default).
    init(_ arguments: [String], stdin: Int32, stdout: Int32, stderr: Int32, blockedSignals: [Int32] = []) throws {
        _ = brokenPipesIgnored
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Straight onto 0, 1 and 2: the sources are the test's own descriptors,
        // never 0 to 2 (a dup2 onto itself would keep FD_CLOEXEC), and no spare
        // number is safe to borrow when a test holds a thousand descriptors.
        for (index, fd) in [stdin, stdout, stderr].enumerated() {
            precondition(fd > 2, "Child takes descriptors above 2")
            posix_spawn_file_actions_adddup2(&actions, fd, Int32(index))
        }
        // As a superserver starts it: no signal blocked (the test runner's
        // threads block some, and a mask survives exec), none ignored.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in blockedSignals { sigaddset(&signals, signal) }
        posix_spawnattr_setsigmask(&attributes, &signals)
        sigemptyset(&signals)
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

    /// At least `count` bytes, or what came before the end of the stream.
    func receive(atLeast count: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while bytes.count < count {
            let received = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
            if received <= 0 { break }
            bytes += buffer[..<received]
        }
        return bytes
    }

    /// The whole reply as text, after checking the server closed cleanly.
    func replyText(timeout: Double = 15, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let (bytes, end) = receiveAll(timeout: timeout)
        #expect(end == .endOfStream, "the server closes with FIN, not a reset or silence", sourceLocation: sourceLocation)
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One connection to a freshly spawned in.tcpmuxd, from the client's side.
final class Connection: ClientSocket, @unchecked Sendable {
    /// The client's socket; -1 once closed by `reset()`.
    private(set) var client: Int32
    let server: Child
    let started = now()

    /// Starts in.tcpmuxd with `arguments` on an accepted loopback connection,
    /// arriving on `endpoint` from `source`. `launcher` runs first and execs the
    /// server (a shell that opens a descriptor, say); `prepare` gets the accepted
    /// socket before the server does.
    init(_ arguments: [String] = [], endpoint: Endpoint = .ipv4("127.0.0.1"), source: String? = nil,
         launcher: [String] = [], prepare: (Int32) -> Void = { _ in }) throws {
        let listener = try listeningSocket(endpoint)
        defer { close(listener) }
        client = try connectSocket(to: listener, from: source)
        let accepted = try check("accept", spawnLock.withLock { closeOnExec(accept(listener, nil, nil)) })
        defer { close(accepted) }
        prepare(accepted)
        server = try Child(launcher + [serverBinary] + arguments, stdin: accepted, stdout: accepted, stderr: accepted)
    }

    deinit { if client >= 0 { close(client) } }

    /// Closes with a TCP reset (a shutdown would send a FIN).
    func reset() {
        resetOnClose(client)
        close(client)
        client = -1
    }

    /// Closes our side (so the server's drain ends) and returns its exit status.
    func finish(timeout: Double = 15) -> Int32 {
        if client >= 0 { shutdown(client, Int32(SHUT_RDWR)) }
        return server.wait(timeout: timeout)
    }
}

/// Sends `request` on a new connection, half-closes, and returns the exact reply
/// after checking the clean close and exit status 0.
func exchange(_ request: String, arguments: [String] = [], endpoint: Endpoint = .ipv4("127.0.0.1"), source: String? = nil,
              sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let connection = try Connection(arguments, endpoint: endpoint, source: source)
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

/// A configuration file in a fresh temporary directory, removed with the value.
final class ConfigurationFile {
    let directory: String
    let path: String

    init(_ text: String, mode: mode_t = 0o644) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tcpmuxd-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        path = directory + "/tcpmuxd.conf"
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode)
    }

    /// A file beside the configuration (a script, a socket path).
    func sibling(_ name: String) -> String { directory + "/" + name }

    var arguments: [String] { ["-f", path] }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}

/// A value set on one thread and awaited on another.
final class Counter: @unchecked Sendable {
    private let ready = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var value: Int?
    func set(_ newValue: Int) { lock.withLock { value = newValue }; ready.signal() }
    var isSet: Bool { lock.withLock { value != nil } }
    /// The value, once set (at most 10 s); -1 if it never was.
    func wait() -> Int { ready.wait(timeout: .now() + 10) == .success ? lock.withLock { value ?? -1 } : -1 }
}

/// Runs `body` on a new thread; `join` waits for it to end.
final class Background: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping @Sendable () -> Void) {
        Thread { [done] in
            body()
            done.signal()
        }.start()
    }

    func join() { done.wait() }
}

/// A backend for forward hand-offs, on TCP loopback or a Unix socket: each
/// connection is handled by `serve` on its own thread.
final class Backend: @unchecked Sendable {
    /// The TCP port; 0 for a Unix socket.
    let port: UInt16
    /// For the configuration: `127.0.0.1:PORT` or the socket path.
    let target: String

    init(unixPath: String? = nil, serve: @escaping @Sendable (Int32) -> Void) throws {
        let fd: Int32
        if let unixPath {
            fd = try unixListener(unixPath, backlog: 64)
            target = unixPath
            port = 0
        } else {
            fd = try listeningSocket()
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            port = UInt16(bigEndian: address.sin_port)
            target = "127.0.0.1:\(port)"
        }
        Thread { [stopped] in
            // The listener is closed here, by the thread that accepts on it, never
            // under it: a number closed elsewhere could be reused by another
            // test's listener, whose connections this loop would then steal.
            defer { close(fd) }
            while !stopped.isSet {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                // Wait outside the lock: accept(2) under it would block every spawn.
                guard poll(&entry, 1, 100) > 0 else { continue }
                let connection = spawnLock.withLock { closeOnExec(accept(fd, nil, nil)) }
                if connection < 0 { continue }
                Thread {
                    serve(connection)
                    close(connection)
                }.start()
            }
        }.start()
    }

    private let stopped = Counter()

    /// Echoes every byte until end of input, then closes its side.
    static let echo: @Sendable (Int32) -> Void = { fd in
        // Bounded: a stuck test cannot keep this thread forever.
        var timeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        echoUntilEnd(fd)
    }

    deinit { stopped.set(1) }
}

/// Sends back every byte read from `fd` until end of input (each chunk given to
/// `record` first), then closes its sending side.
func echoUntilEnd(_ fd: Int32, record: ([UInt8]) -> Void = { _ in }) {
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count <= 0 { break }
        record(Array(buffer[..<count]))
        var sent = 0
        while sent < count {
            let written = buffer[sent..<count].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return }
            sent += written
        }
    }
    shutdown(fd, Int32(SHUT_WR))
}

/// Reads `fd` to its end (or error): the bytes.
func readToEnd(_ fd: Int32) -> [UInt8] {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { return bytes }
        bytes += buffer[..<count]
    }
}

/// Sends `payload` from a second thread while reading everything back, so
/// neither side's buffers can fill and stall; half-closes after sending.
func sendAndReceive(_ connection: Connection, _ payload: [UInt8]) -> (bytes: [UInt8], end: ConnectionEnd) {
    let sender = Background { [connection] in
        try? connection.send(payload)
        connection.shutdownWrite()
    }
    let received = connection.receiveAll(timeout: 60)
    sender.join()
    return received
}

/// Bytes that are not all alike, reproducibly.
func pseudoRandomBytes(_ count: Int, seed: UInt64 = 0x9E3779B97F4A7C15) -> [UInt8] {
    var state = seed
    return (0..<count).map { _ in
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
    }
}

/// Makes close(2) of `fd` a TCP reset: SO_LINGER {1, 0}.
func resetOnClose(_ fd: Int32) {
    var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
}

/// A Unix listening socket anyone may connect to (the server connects as its
/// unprivileged user, nobody); a backlog of 0 is filled by one pending connection.
func unixListener(_ path: String, backlog: Int32) throws -> Int32 {
    let fd = try check("socket", socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0))
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
    _ = try withUnsafePointer(to: &address) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            try check("bind", bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)))
        }
    }
    try check("listen", listen(fd, backlog))
    chmod(path, 0o666)
    return fd
}
