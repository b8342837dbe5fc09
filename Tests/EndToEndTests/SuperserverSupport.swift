// Real superservers running the real binary from the shipped example files,
// adapted only in address, port and paths; and the real clients that talk to them.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The source tree: the shipped examples, the man pages, the Makefile.
let packageRoot: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// CI sets CI=true: there a missing tool is a failure, never a skip.
let runningInCI = ProcessInfo.processInfo.environment["CI"] == "true"

/// A program from a Debian package, found where the package puts it, or where
/// `.ci/run` extracts a package that cannot be installed beside another.
struct Tool: Sendable, CustomStringConvertible {
    let name: String
    let package: String
    var candidates: [String]

    init(_ name: String, package: String, environment: String? = nil, _ candidates: [String]) {
        self.name = name
        self.package = package
        let given = environment.flatMap { ProcessInfo.processInfo.environment[$0] }.map { [$0] } ?? []
        self.candidates = given.filter { !$0.isEmpty } + candidates
    }

    var path: String? { candidates.first { access($0, X_OK) == 0 } }
    var description: String { "\(name) (Debian package \(package))" }

    /// The path, or a failure naming the package to install.
    func require(sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        try #require(path, "\(name) not found (\(candidates.joined(separator: ", "))): apt-get install \(package)",
                     sourceLocation: sourceLocation)
    }

    /// Where `.ci/run` extracts a package it cannot install (see there).
    static func extracted(_ package: String, _ path: String) -> String {
        "\(packageRoot)/.build/superservers/\(package)\(path)"
    }

    static let openbsdInetd = Tool("openbsd-inetd", package: "openbsd-inetd", environment: "TCPMUXD_INETD",
                                   ["/usr/sbin/inetd", extracted("openbsd-inetd", "/usr/sbin/inetd")])
    static let xinetd = Tool("xinetd", package: "xinetd", environment: "TCPMUXD_XINETD",
                             ["/usr/sbin/xinetd", extracted("xinetd", "/usr/sbin/xinetd")])
    static let socketActivate = Tool("systemd-socket-activate", package: "systemd",
                                     ["/usr/bin/systemd-socket-activate", "/bin/systemd-socket-activate"])
    static let netcat = Tool("nc -N (OpenBSD netcat)", package: "netcat-openbsd", ["/usr/bin/nc.openbsd", "/bin/nc.openbsd"])
    static let telnet = Tool("telnet", package: "telnet", ["/usr/bin/telnet", "/usr/bin/inetutils-telnet"])
    static let mandoc = Tool("mandoc", package: "mandoc", ["/usr/bin/mandoc"])
    static let make = Tool("make", package: "make", ["/usr/bin/make"])
}

/// Runs when every tool is there, or in CI (where a missing one fails the test);
/// elsewhere skips, naming the packages to install.
func needs(_ tools: [Tool], also condition: (ok: Bool, why: String) = (true, "")) -> ConditionTrait {
    let missing = tools.filter { $0.path == nil }
    var reasons = missing.isEmpty ? [] : ["not installed: \(missing.map(\.description).joined(separator: ", ")); apt-get install \(missing.map(\.package).joined(separator: " ")) (or run .ci/run)"]
    if !condition.ok { reasons.append(condition.why) }
    let runs = runningInCI || reasons.isEmpty
    return .enabled(if: runs, Comment(rawValue: reasons.joined(separator: "; ")))
}

func readText(_ path: String) throws -> String {
    try String(contentsOfFile: path, encoding: .utf8)
}

func writeText(_ text: String, to path: String, mode: mode_t = 0o644) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    try check("chmod", chmod(path, mode))
}

/// `text` with `old` replaced by `new`, where `old` must occur exactly `count`
/// times: an example that no longer holds what the test adapts fails here,
/// instead of being run unadapted or silently not at all.
func substituting(_ old: String, _ new: String, in text: String, of file: String, count: Int = 1) throws -> String {
    let found = text.components(separatedBy: old).count - 1
    guard found == count else {
        throw ExampleError(description: "\(file): expected \(count) × \(old.debugDescription), found \(found)")
    }
    return text.replacingOccurrences(of: old, with: new)
}

struct ExampleError: Error, CustomStringConvertible {
    let description: String
}

/// The port a socket is bound to.
func localPort(of fd: Int32) throws -> UInt16 {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = try withUnsafeMutablePointer(to: &address) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            try check("getsockname", getsockname(fd, $0, &length))
        }
    }
    return UInt16(bigEndian: address.sin_port)
}

/// A socket bound to 127.0.0.1 and a free port, not listening: a connection to
/// it is refused for as long as it stays open, and nobody else can take the port.
func boundSocket() throws -> Int32 {
    let fd = try check("socket", spawnLock.withLock { closeOnExec(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)) })
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = try withUnsafePointer(to: &address) {
        try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            try check("bind", bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)))
        }
    }
    return fd
}

/// A port on 127.0.0.1 that was free a moment ago, chosen by the kernel (never a
/// fixed one: other programs on this machine use fixed high ports).
func freePort() throws -> UInt16 {
    let fd = try boundSocket()
    defer { close(fd) }
    return try localPort(of: fd)
}

/// A client of our own: a TCP connection to 127.0.0.1:port.
final class TCPClient: ClientSocket {
    let client: Int32

    init(port: UInt16) throws {
        client = try check("socket", spawnLock.withLock { closeOnExec(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)) })
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        do {
            _ = try withUnsafePointer(to: &address) {
                try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    try check("connect", connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size)))
                }
            }
        } catch {
            close(client)
            throw error
        }
    }

    deinit { close(client) }

    /// Sends, half-closes and reads the reply to the end: what `nc -N` does.
    static func exchange(_ request: [UInt8], port: UInt16, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
        let connection = try TCPClient(port: port)
        try connection.send(request)
        connection.shutdownWrite()
        let (bytes, end) = connection.receiveAll(timeout: 10)
        #expect(end == .endOfStream, "the server closes with FIN, not a reset or silence", sourceLocation: sourceLocation)
        return bytes
    }

    static func exchange(_ request: String, port: UInt16, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        String(decoding: try exchange(Array(request.utf8), port: port, sourceLocation: sourceLocation), as: UTF8.self)
    }
}

/// A program run with pipes on fd 0, 1 and 2, as a person at a terminal would:
/// `input` is written at once, and the input is closed once `closeInput` says so
/// (given the output so far), since telnet drops a reply that arrives after
/// its input ended. Bounded by `timeout`.
func runClient(_ arguments: [String], input: String, timeout: Double = 10,
               closeInput: (String) -> Bool = { _ in true },
               sourceLocation: SourceLocation = #_sourceLocation) throws -> (status: Int32, stdout: String, stderr: String) {
    let pipes = try closeOnExecPipes(3)
    let child: Child
    do {
        child = try Child(arguments, stdin: pipes[0][0], stdout: pipes[1][1], stderr: pipes[2][1])
    } catch {
        pipes.joined().forEach { close($0) }
        throw error
    }
    close(pipes[0][0]); close(pipes[1][1]); close(pipes[2][1])
    var inputOpen = true
    func endInput() { if inputOpen { close(pipes[0][1]); inputOpen = false } }
    defer { endInput() }
    let bytes = Array(input.utf8)
    _ = bytes.withUnsafeBytes { write(pipes[0][1], $0.baseAddress, $0.count) }

    var outputs: [[UInt8]] = [[], []]
    var open = [pipes[1][0], pipes[2][0]]
    let end = now() + timeout
    var buffer = [UInt8](repeating: 0, count: 65536)
    while open.contains(where: { $0 >= 0 }) && now() < end {
        if inputOpen && closeInput(String(decoding: outputs[0], as: UTF8.self)) { endInput() }
        var entries = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        guard poll(&entries, nfds_t(entries.count), 50) > 0 else { continue }
        for (index, entry) in entries.enumerated() where entry.fd >= 0 && entry.revents != 0 {
            let count = buffer.withUnsafeMutableBytes { read(entry.fd, $0.baseAddress, $0.count) }
            if count > 0 {
                outputs[index] += buffer[..<count]
            } else if count == 0 || errno != EINTR {
                close(entry.fd)
                open[index] = -1
            }
        }
    }
    open.filter { $0 >= 0 }.forEach { close($0) }
    let stdout = String(decoding: outputs[0], as: UTF8.self)
    let stderr = String(decoding: outputs[1], as: UTF8.self)
    #expect(!open.contains(where: { $0 >= 0 }), "\(arguments[0]) still running after \(timeout) s; stdout: \(stdout.debugDescription)",
            sourceLocation: sourceLocation)
    endInput()
    return (child.wait(timeout: max(end - now(), 1)), stdout, stderr)
}

/// The bytes a scripted telnet session showed from the server: its output past
/// its banner. telnet types each line with CRLF and shows CRLF as a line feed.
func telnetSession(port: UInt16, lines: [String], until expected: String,
                   sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let telnet = try Tool.telnet.require(sourceLocation: sourceLocation)
    let banner = "Escape character is '^]'.\n"
    func shown(_ stdout: String) -> String {
        stdout.range(of: banner).map { String(stdout[$0.upperBound...]) } ?? ""
    }
    let run = try runClient([telnet, "127.0.0.1", "\(port)"], input: lines.map { $0 + "\n" }.joined(),
                            closeInput: { shown($0).contains(expected) }, sourceLocation: sourceLocation)
    #expect(run.stdout.contains("Connected to 127.0.0.1.\n" + banner), "telnet: \(run.stdout.debugDescription) \(run.stderr.debugDescription)",
            sourceLocation: sourceLocation)
    #expect(run.stderr.contains("Connection closed by foreign host."), "telnet stderr: \(run.stderr.debugDescription)",
            sourceLocation: sourceLocation)
    return shown(run.stdout)
}

/// `nc -N 127.0.0.1 PORT` given `input`: what it printed. -N half-closes at
/// the end of the input and waits for the server to close.
func netcat(port: UInt16, _ input: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
    let nc = try Tool.netcat.require(sourceLocation: sourceLocation)
    let run = try runClient([nc, "-N", "127.0.0.1", "\(port)"], input: input, sourceLocation: sourceLocation)
    #expect(run.status == 0, "nc exit status; stderr: \(run.stderr.debugDescription)", sourceLocation: sourceLocation)
    return run.stdout
}

/// The superservers in.tcpmuxd ships examples for.
enum Superserver: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case openbsdInetd = "openbsd-inetd"
    case xinetd
    case systemd = "systemd-socket-activate"

    var tool: Tool {
        switch self {
        case .openbsdInetd: .openbsdInetd
        case .xinetd: .xinetd
        case .systemd: .socketActivate
        }
    }

    var testDescription: String { rawValue }

    /// openbsd-inetd writes /run/inetd.pid, and removes it when it exits: a
    /// running system inetd would lose its pid file to ours. (One that another
    /// test run started, from its own directory, would not mind.)
    static var otherInetdRunning: Int32? {
        guard let text = try? readText("/run/inetd.pid"), let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)),
              kill(pid, 0) == 0 else { return nil }
        let commandLine = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))).map { String(decoding: $0, as: UTF8.self) } ?? ""
        return commandLine.contains(Deployment.directoryPrefix + Superserver.openbsdInetd.rawValue) ? nil : pid
    }
}

/// The shipped examples in the source tree.
enum Example {
    static let inetdConf = "inetd.conf.example"
    static let tcpmuxdConf = "tcpmuxd.conf.example"
    static let xinetdService = "examples/xinetd.d/tcpmux"
    static let systemdSocket = "examples/systemd/tcpmux.socket"
    static let systemdService = "examples/systemd/tcpmux@.service"
    static let installedBinary = "/usr/local/sbin/in.tcpmuxd"
    static let installedConfiguration = "/etc/tcpmuxd.conf"

    static func text(_ name: String) throws -> String { try readText("\(packageRoot)/\(name)") }

    /// The value of `Key=` in a unit file; there must be exactly one.
    static func unitValue(_ key: String, in text: String, of file: String) throws -> String {
        let values = text.split(separator: "\n").filter { $0.hasPrefix("\(key)=") }.map { String($0.dropFirst(key.count + 1)) }
        guard values.count == 1 else { throw ExampleError(description: "\(file): expected one \(key)=, found \(values.count)") }
        return values[0]
    }
}

/// One superserver listening on 127.0.0.1 and a free high port, running
/// in.tcpmuxd from the shipped examples adapted only in address, port and paths
/// (and, when not root, the user column: only root can switch users).
final class Deployment {
    let superserver: Superserver
    let port: UInt16
    let directory: String
    let configurationFile: String
    let logFile: String
    /// The binary under test, copied where the superserver's user can run it.
    let binary: String
    private var daemon: Child?
    static let directoryPrefix = "/tmp/tcpmuxd-"

    /// `forwardPort`: where the example's forward service (`web`) relays to.
    init(_ superserver: Superserver, forwardPort: UInt16, sourceLocation: SourceLocation = #_sourceLocation) throws {
        self.superserver = superserver
        let program = try superserver.tool.require(sourceLocation: sourceLocation)
        var template = Array("\(Deployment.directoryPrefix)\(superserver.rawValue).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw SystemCallError("mkdtemp") }
        directory = String(cString: made)
        // The superserver may run in.tcpmuxd as nobody, which must read its files.
        try check("chmod", chmod(directory, 0o755))
        configurationFile = "\(directory)/tcpmuxd.conf"
        logFile = "\(directory)/\(superserver.rawValue).log"
        port = try freePort()
        binary = "\(directory)/in.tcpmuxd"
        do {
            // A copy: nobody may not reach the build directory.
            try FileManager.default.copyItem(atPath: serverBinary, toPath: binary)
            try check("chmod", chmod(binary, 0o755))
            try writeText(try substituting("forward 127.0.0.1:8080", "forward 127.0.0.1:\(forwardPort)",
                                           in: try Example.text(Example.tcpmuxdConf), of: Example.tcpmuxdConf),
                          to: configurationFile)
            let command = try prepare(program)
            daemon = try Deployment.start(command, log: logFile)
            try waitUntilListening()
        } catch {
            stop()
            throw error
        }
    }

    deinit { stop() }

    /// The user column of inetd and xinetd: the example's, unless the tests
    /// cannot switch users.
    private static func user(_ shipped: String) -> String {
        geteuid() == 0 ? shipped : String(cString: getpwuid(geteuid())!.pointee.pw_name)
    }

    /// Writes the superserver's configuration from the shipped example; returns
    /// its command line.
    private func prepare(_ program: String) throws -> [String] {
        switch superserver {
        case .openbsdInetd:
            // The one line that is not a comment, field by field.
            let text = try Example.text(Example.inetdConf)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            let active = lines.indices.filter { !lines[$0].hasPrefix("#") && !lines[$0].allSatisfy(\.isWhitespace) }
            guard active.count == 1 else { throw ExampleError(description: "\(Example.inetdConf): expected one service line, found \(active.count)") }
            var fields = lines[active[0]].split(whereSeparator: \.isWhitespace).map(String.init)
            guard fields.count >= 7, fields[0] == "tcpmux", fields[5] == Example.installedBinary,
                  let at = fields.firstIndex(of: Example.installedConfiguration) else {
                throw ExampleError(description: "\(Example.inetdConf): the service line changed: \(lines[active[0]])")
            }
            fields[0] = "127.0.0.1:\(port)"
            fields[4] = Deployment.user(fields[4])
            fields[5] = binary
            fields[at] = configurationFile
            var adapted = lines.map(String.init)
            adapted[active[0]] = fields.joined(separator: " ")
            let conf = "\(directory)/inetd.conf"
            try writeText(adapted.joined(separator: "\n"), to: conf)
            // -i: stay in the foreground.
            return [program, "-i", conf]
        case .xinetd:
            var text = try Example.text(Example.xinetdService)
            let file = Example.xinetdService
            text = try replacingAttribute("bind", "0.0.0.0", "127.0.0.1", in: text, of: file)
            text = try replacingAttribute("port", "1", "\(port)", in: text, of: file)
            text = try replacingAttribute("server", Example.installedBinary, binary, in: text, of: file)
            text = try replacingAttribute("server_args", "-f \(Example.installedConfiguration)", "-f \(configurationFile)", in: text, of: file)
            text = try replacingAttribute("user", "nobody", Deployment.user("nobody"), in: text, of: file)
            try check("mkdir", mkdir("\(directory)/xinetd.d", 0o755))
            try writeText(text, to: "\(directory)/xinetd.d/tcpmux")
            // The stand-in for the distribution's /etc/xinetd.conf. Its default
            // limit (50 connections a second, then the service is off for 10 s)
            // is raised so that no test depends on its timing.
            let conf = "\(directory)/xinetd.conf"
            try writeText("defaults\n{\n\tcps = 100000 1\n}\nincludedir \(directory)/xinetd.d\n", to: conf)
            return [program, "-dontfork", "-f", conf, "-filelog", logFile]
        case .systemd:
            // What systemd does with the unit pair, done by systemd-socket-activate:
            // ListenStream= is -l, Accept=yes is -a, StandardInput=socket is --inetd.
            let socket = try Example.text(Example.systemdSocket)
            let service = try Example.text(Example.systemdService)
            guard try Example.unitValue("ListenStream", in: socket, of: Example.systemdSocket) == "1",
                  try Example.unitValue("Accept", in: socket, of: Example.systemdSocket) == "yes",
                  try Example.unitValue("StandardInput", in: service, of: Example.systemdService) == "socket" else {
                throw ExampleError(description: "the units no longer listen on port 1 with Accept=yes and StandardInput=socket")
            }
            var execStart = try Example.unitValue("ExecStart", in: service, of: Example.systemdService)
            execStart = try substituting(Example.installedBinary, binary, in: execStart, of: Example.systemdService)
            execStart = try substituting(Example.installedConfiguration, configurationFile, in: execStart, of: Example.systemdService)
            // The prefixes (- @ : + !) say how systemd treats the exit; the rest is argv.
            let argv = execStart.drop { "-@:+!".contains($0) }.split(separator: " ").map(String.init)
            return [program, "-l", "127.0.0.1:\(port)", "-a", "--inetd"] + argv
        }
    }

    /// The xinetd service file with `name = old` made `name = new`; the
    /// attribute must be there once, with that value.
    private func replacingAttribute(_ name: String, _ old: String, _ new: String, in text: String, of file: String) throws -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let matches = lines.indices.filter {
            lines[$0].split(separator: "=", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces) == name
        }
        guard matches.count == 1, let equals = lines[matches[0]].firstIndex(of: "="),
              lines[matches[0]][lines[matches[0]].index(after: equals)...].trimmingCharacters(in: .whitespaces) == old else {
            throw ExampleError(description: "\(file): expected one \"\(name) = \(old)\"")
        }
        lines[matches[0]] = String(lines[matches[0]][...equals]) + " " + new
        return lines.joined(separator: "\n")
    }

    private static func start(_ command: [String], log: String) throws -> Child {
        let (null, output) = try spawnLock.withLock {
            (try check("open", open("/dev/null", O_RDONLY | O_CLOEXEC)),
             try check("open", open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)))
        }
        defer { close(null); close(output) }
        return try Child(command, stdin: null, stdout: output, stderr: output)
    }

    /// What the superserver logged so far, for failure messages.
    var log: String { (try? readText(logFile)) ?? "" }

    /// Waits (at most 10 s) until the superserver itself listens on the port:
    /// the listening socket in /proc/net/tcp is one of its descriptors. xinetd
    /// and openbsd-inetd only log a bad service and carry on without it.
    private func waitUntilListening() throws {
        let end = now() + 10
        while now() < end {
            if let daemon, daemon.hasExited {
                throw ExampleError(description: "\(superserver.rawValue) exited (status \(daemon.wait())); its log: \(log)")
            }
            if let daemon, listeningInode().map({ socketInodes(of: daemon.pid).contains($0) }) == true { return }
            usleep(10_000)
        }
        throw ExampleError(description: "\(superserver.rawValue) not listening on 127.0.0.1:\(port) after 10 s; its log: \(log)")
    }

    /// The inode of the socket listening on 127.0.0.1:port (/proc/net/tcp: local
    /// address in hex, state 0A is LISTEN, inode in the tenth column).
    private func listeningInode() -> String? {
        let local = String(format: "0100007F:%04X", port)
        for line in ((try? readText("/proc/net/tcp")) ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count > 9, fields[1] == local, fields[3] == "0A" { return String(fields[9]) }
        }
        return nil
    }

    private func socketInodes(of pid: pid_t) -> Set<String> {
        let directory = "/proc/\(pid)/fd"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return Set(entries.compactMap { entry in
            guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(entry)"),
                  target.hasPrefix("socket:[") else { return nil }
            return String(target.dropFirst(8).dropLast())
        })
    }

    /// Still running: a superserver that disabled the service or died would not be.
    var isRunning: Bool { daemon.map { !$0.hasExited } ?? false }

    /// SIGTERM, then a bounded wait; removes the files.
    func stop() {
        if let daemon {
            if !daemon.hasExited { kill(daemon.pid, SIGTERM) }
            _ = daemon.wait(timeout: 5)
            self.daemon = nil
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
