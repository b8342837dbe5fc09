// The configuration file as the real binary loads it (issue 9, items 10 to 14):
// StrictModes for the path, a large table, strict text, and the real clients a
// person would use, as README's "Try it" lists them.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `in.tcpmuxd -n -f PATH`: exit status, stdout, stderr.
func runCheck(_ path: String) throws -> (status: Int32, stdout: String, stderr: String) {
    try runWithPipes(["-n", "-f", path], input: "")
}

/// Makes a directory owned by `uid` with `mode` (mkdir's mode is cut by the umask).
func makeDirectory(_ path: String, uid: uid_t = 0, mode: mode_t = 0o755) throws {
    try check("mkdir", mkdir(path, 0o700))
    try check("chown", chown(path, uid, 0))
    try check("chmod", chmod(path, mode))
}

/// uid 1 (daemon on Debian): anyone but root.
let otherUser: uid_t = 1

/// As root, the path to the file is checked as sshd's StrictModes checks it
/// (OpenSSH misc.c, safe_path): every directory on the way root's and writable
/// by nobody else, every symbolic link root's, its target checked the same way.
@Suite(.enabled(if: runningAsRoot, "StrictModes applies to a root server only"))
struct StrictModesTests {
    let base: ConfigurationFile
    let good = "open tcpmux\n"

    init() throws {
        // /tmp/tcpmuxd-UUID: root's, 0755, in root's sticky /tmp.
        base = try ConfigurationFile("open tcpmux\n")
    }

    /// A file in `directory`, root's, 0644.
    func file(in directory: String, _ name: String = "tcpmuxd.conf") throws -> String {
        let path = directory + "/" + name
        try writeText(good, to: path)
        return path
    }

    /// Refused under -n (exit 1, the reason on stderr) and under service
    /// (every request gets the table-unavailable line): fail closed.
    func expectRefused(_ path: String, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let run = try runCheck(path)
        #expect(run.status == 1, "exit status; stdout \(run.stdout.debugDescription)", sourceLocation: sourceLocation)
        #expect(run.stderr == "in.tcpmuxd: \(path): \(reason); refusing it\n", sourceLocation: sourceLocation)
        #expect(try exchange("open\r\n", arguments: ["-f", path], sourceLocation: sourceLocation) == tableUnavailable,
                sourceLocation: sourceLocation)
    }

    func expectLoads(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let run = try runCheck(path)
        #expect(run.status == 0, "stderr \(run.stderr.debugDescription)", sourceLocation: sourceLocation)
        #expect(run.stdout == "# \(path)\n" + good, sourceLocation: sourceLocation)
        #expect(try exchange("open\r\n", arguments: ["-f", path], sourceLocation: sourceLocation) == "+OK\r\n-No request received\r\n",
                sourceLocation: sourceLocation)
    }

    /// A root-owned file in a directory another user owns: that user could put
    /// another root-owned file, or a link to one, in its place.
    @Test func directoryOfAnotherUserRefused() throws {
        let directory = base.sibling("daemon")
        try makeDirectory(directory, uid: otherUser)
        try expectRefused(try file(in: directory), "directory \(directory) is owned by uid 1, not root")
    }

    /// Group- or world-writable without the sticky bit: anyone in the group can
    /// rename the file away and put another in its place.
    @Test(arguments: [0o775 as mode_t, 0o757, 0o777])
    func writableDirectoryRefused(_ mode: mode_t) throws {
        let directory = base.sibling("shared")
        try makeDirectory(directory, mode: mode)
        try expectRefused(try file(in: directory), "directory \(directory) is writable by group or others (mode \(String(mode, radix: 8)))")
    }

    /// A component higher up counts as much as the file's own directory.
    @Test func unsafeAncestorRefused() throws {
        let upper = base.sibling("upper")
        try makeDirectory(upper, mode: 0o775)
        let lower = upper + "/lower"
        try makeDirectory(lower)
        try expectRefused(try file(in: lower), "directory \(upper) is writable by group or others (mode 775)")
    }

    /// A symbolic link: its target's directories are checked as well, and so is
    /// the directory the link sits in, and the link's owner.
    @Test func symbolicLinksAreChecked() throws {
        let unsafe = base.sibling("daemon")
        try makeDirectory(unsafe, uid: otherUser)
        let target = try file(in: unsafe)
        // A root-owned link in a safe directory, to a file in an unsafe one.
        let toUnsafe = base.sibling("to-unsafe.conf")
        try check("symlink", symlink(target, toUnsafe))
        try expectRefused(toUnsafe, "directory \(unsafe) is owned by uid 1, not root")
        // A link in an unsafe directory, to a file in a safe one: its owner
        // could point it at another root-owned file.
        let inUnsafe = unsafe + "/link.conf"
        try check("symlink", symlink(base.path, inUnsafe))
        try expectRefused(inUnsafe, "directory \(unsafe) is owned by uid 1, not root")
        // A link another user owns, in a safe directory.
        let foreign = base.sibling("foreign.conf")
        try check("symlink", symlink(base.path, foreign))
        try check("lchown", lchown(foreign, otherUser, 0))
        try expectRefused(foreign, "symbolic link \(foreign) is owned by uid 1, not root")
    }

    /// A hard link someone else made in a sticky directory to a root-owned file.
    @Test func hardLinkInStickyDirectoryRefused() throws {
        let sticky = base.sibling("sticky")
        try makeDirectory(sticky, mode: 0o1777)
        let path = try file(in: sticky)
        try check("link", link(path, sticky + "/other"))
        try expectRefused(path, "\(path) has 2 links in a directory others can write to")
    }

    /// Root's all the way: a plain file, a root-owned link (absolute and
    /// relative) to it, and a root-owned sticky directory such as /tmp, where
    /// nobody else can rename or remove root's entries.
    @Test func rootOwnedChainLoads() throws {
        try expectLoads(base.path)
        let absolute = base.sibling("absolute.conf")
        try check("symlink", symlink(base.path, absolute))
        try expectLoads(absolute)
        let relative = base.sibling("relative.conf")
        try check("symlink", symlink("./tcpmuxd.conf", relative))
        try expectLoads(relative)
        let sticky = base.sibling("sticky")
        try makeDirectory(sticky, mode: 0o1777)
        try expectLoads(try file(in: sticky))
    }
}

/// Loading is O(n log n) (issue 9, item 11): the 1 MiB file of 75,000 names
/// took 26 s of CPU (release build) per connection before a byte was read.
@Suite struct LargeConfigurationTests {
    /// The last name of a 1 MiB table is answered. The reply is awaited 15 s,
    /// well over the tenth of a second it takes (a second in a debug build) and
    /// well under what the quadratic load took.
    @Test func lastNameOfAMebibyteTable() throws {
        var text = "", count = 0
        while text.utf8.count < (1 << 20) - 32 {
            text += "s\(count) tcpmux\n"
            count += 1
        }
        let config = try ConfigurationFile(text)
        #expect(try exchange("S\(count - 1)\r\n", arguments: config.arguments) == "+OK\r\n-No request received\r\n")
        let run = try runCheck(config.path)
        #expect(run.status == 0)
        #expect(run.stdout.hasSuffix("\ns\(count - 1) tcpmux\n"))
        // A duplicate at the very end is still found, and fails closed.
        let duplicated = try ConfigurationFile(text + "S7 tcpmux\n")
        let refused = try runCheck(duplicated.path)
        #expect(refused.status == 1)
        #expect(refused.stderr == "\(duplicated.path):\(count + 1): duplicate service name \"S7\" (first at line 8)\n")
        #expect(try exchange("s1\r\n", arguments: duplicated.arguments) == tableUnavailable)
    }
}

/// Strict text (issue 9, item 12): what the file says is what runs.
@Suite struct StrictTextEndToEndTests {
    /// `exec /tmp/caf\xe9` (Latin-1) was decoded with a replacement character:
    /// the file is refused, with its line, and the server fails closed.
    @Test func invalidUTF8Refused() throws {
        let config = try ConfigurationFile("")
        try Data(Array("open tcpmux\ncafe exec /tmp/caf".utf8) + [0xE9, 0x0A]).write(to: URL(fileURLWithPath: config.path))
        let run = try runCheck(config.path)
        #expect(run.status == 1)
        #expect(run.stderr == "\(config.path):2: not valid UTF-8\n")
        #expect(try exchange("open\r\n", arguments: config.arguments) == tableUnavailable)
    }

    /// `"a\rb"` silently became `arb`; a message too long for a 256-byte reply
    /// buffer (libmill's tcpmux client) is refused too.
    @Test func unknownEscapeAndLongMessageRefused() throws {
        let config = try ConfigurationFile("""
            a exec /bin/echo "a\\rb"
            b message=\(String(repeating: "x", count: 254)) tcpmux
            """)
        let run = try runCheck(config.path)
        #expect(run.status == 1)
        #expect(run.stderr == """
            \(config.path):1: unknown escape in quotes: backslash before "r" (only \\" and \\\\ are escapes)
            \(config.path):2: message= longer than 253 bytes: the reply line, + and CRLF included, would exceed 256 bytes

            """)
    }

    /// `message=""` gives the bare `+` CRLF that strict clients such as
    /// nanomsg's tcpmux:// transport require, then the service's own bytes.
    @Test func emptyMessageGivesBarePlus() throws {
        let config = try ConfigurationFile(#"echo message="" exec /bin/cat cat"#)
        #expect(try exchange("echo\r\nhello", arguments: config.arguments) == "+\r\nhello")
    }
}

/// The clients README's "Try it" names, for real (issue 9, items 13 and 14).
@Suite struct RealClientTests {
    static let bareLineFeed = "-Request line must end with CRLF, not a bare LF (use telnet, nc -C, ncat -C or socat's crlf option)\r\n"

    /// Accepts one connection on a fresh loopback port and serves it with
    /// in.tcpmuxd `arguments`; `stderr`, if given, is the server's fd 2.
    final class OneConnection: @unchecked Sendable {
        let port: UInt16
        private let listener: Int32
        private let done: Background
        private let result: Counter

        init(_ arguments: [String], stderr: Int32? = nil) throws {
            let listener = try listeningSocket()
            var address = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
            }
            let result = Counter()
            self.listener = listener
            self.result = result
            port = UInt16(bigEndian: address.sin_port)
            done = Background {
                // Wait outside the lock (accept under it would block the
                // client's spawn), at most 15 s: a client that never came fails.
                var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 15_000) > 0 else {
                    result.set(-1)
                    return
                }
                let accepted = spawnLock.withLock { closeOnExec(accept(listener, nil, nil)) }
                guard accepted >= 0, let server = try? Child([serverBinary] + arguments, stdin: accepted, stdout: accepted,
                                                             stderr: stderr ?? accepted) else {
                    result.set(-1)
                    return
                }
                close(accepted)
                result.set(Int(server.wait()))
            }
        }

        /// The server's exit status.
        func finish() -> Int {
            done.join()
            close(listener)
            return result.wait()
        }
    }

    /// Plain `nc` sends the name with a bare LF: the reply says what to do instead.
    @Test(needs([.netcat]))
    func plainNetcatIsToldToUseCRLF() throws {
        let config = try ConfigurationFile("tcpmux tcpmux\n")
        let server = try OneConnection(config.arguments)
        #expect(try netcat(port: server.port, "tcpmux\n") == RealClientTests.bareLineFeed)
        #expect(server.finish() == 0)
    }

    /// `nc -C` sends CRLF: it works.
    @Test(needs([.netcat]))
    func netcatWithCRLFWorks() throws {
        let config = try ConfigurationFile("tcpmux tcpmux\n")
        let server = try OneConnection(config.arguments)
        let nc = try Tool.netcat.require()
        let run = try runClient([nc, "-C", "-N", "127.0.0.1", "\(server.port)"], input: "HELP\n")
        #expect(run.stdout == "tcpmux\r\n")
        #expect(server.finish() == 0)
    }

    /// telnet whose input ends at once (`printf 'HELP\n' | telnet HOST 1`) closes
    /// without sending a byte; the server answers `-No request received`, which
    /// telnet, gone already, does not show.
    @Test(needs([.telnet]))
    func telnetWithInputEndedSendsNothing() throws {
        let config = try ConfigurationFile("tcpmux tcpmux\n")
        let log = try closeOnExecPipes(1)[0]
        let server = try OneConnection(["-d"] + config.arguments, stderr: log[1])
        let telnet = try Tool.telnet.require()
        _ = try runClient([telnet, "127.0.0.1", "\(server.port)"], input: "HELP\n")
        #expect(server.finish() == 0)
        close(log[1])
        let logged = String(decoding: readToEnd(log[0]), as: UTF8.self)
        close(log[0])
        #expect(logged.contains(": \"\" rejected: No request received"), "log: \(logged.debugDescription)")
    }
}
