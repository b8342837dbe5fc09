// Configured services through the real binary: exec and forward hand-offs, access
// rules, and a configuration that fails closed.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

let unavailable = "-Service temporarily unavailable\r\n"
let tableUnavailable = "-Service table unavailable\r\n"
let tenMiB = pseudoRandomBytes(10 << 20)
let runningAsRoot = geteuid() == 0

@Suite struct ExecTests {
    /// 10 MiB through an exec'd cat: every byte back, in order, then a clean close.
    @Test func tenMiBEachWay() throws {
        let config = try ConfigurationFile("echo exec /bin/cat cat")
        let connection = try Connection(config.arguments)
        try connection.send("echo\r\n")
        let (bytes, end) = sendAndReceive(connection, tenMiB)
        #expect(end == .endOfStream)
        #expect(bytes.count == 5 + tenMiB.count)
        #expect(bytes.prefix(5) == Array("+OK\r\n".utf8)[...])
        #expect(bytes.dropFirst(5).elementsEqual(tenMiB), "payload intact")
        #expect(connection.finish() == 0)
    }

    /// Bytes written in the same segment as the request line reach the program
    /// first and intact: the server never reads past the CRLF (the BSD inetds
    /// read in bulk and swallow them).
    @Test func pipelinedBytesArriveFirst() throws {
        let config = try ConfigurationFile("echo message=\"Go ahead\" exec /bin/cat cat")
        let connection = try Connection(config.arguments)
        try connection.send("ECHO\r\nfirst\r\n\0binary\u{1}")
        try connection.send("second")
        connection.shutdownWrite()
        #expect(connection.replyText() == "+Go ahead\r\nfirst\r\n\0binary\u{1}second")
        #expect(connection.finish() == 0)
    }

    /// The program runs as the configured user with a clean environment of
    /// ucspi-tcp's names (CVE-2013-4342: xinetd ran tcpmux services as root).
    @Test func userAndEnvironment() throws {
        let config = try ConfigurationFile("""
            whoami user=nobody exec /bin/sh sh -c "echo $(id -u):$(id -g):$(id -G); env | sort"
            """)
        let connection = try Connection(config.arguments, source: "127.0.0.1")
        try connection.send("whoami\r\n")
        connection.shutdownWrite()
        var local = sockaddr_in(), peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(connection.client, $0, &length) } }
        _ = withUnsafeMutablePointer(to: &peer) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(connection.client, $0, &length) } }
        let reply = connection.replyText()
        #expect(connection.finish() == 0)
        guard runningAsRoot else {
            // Not root: the switch to nobody cannot happen, and is refused before any `+`.
            #expect(reply == unavailable)
            return
        }
        let expected = """
            +OK\r
            65534:65534:65534
            PATH=/usr/local/bin:/usr/bin:/bin
            PROTO=TCP
            PWD=/
            TCPLOCALIP=127.0.0.1
            TCPLOCALPORT=\(UInt16(bigEndian: peer.sin_port))
            TCPMUXSERVICE=whoami
            TCPREMOTEIP=127.0.0.1
            TCPREMOTEPORT=\(UInt16(bigEndian: local.sin_port))

            """
        #expect(reply == expected)
    }

    /// No descriptor the server inherited reaches the program: started with fd 7
    /// open and not close-on-exec, as a careless superserver might leave it, the
    /// program holds only the connection on 0, 1 and 2 (its shell lists them).
    @Test func onlyTheConnectionInherited() throws {
        let config = try ConfigurationFile("""
            fds exec /bin/sh sh -c "ls /proc/$$/fd; :"
            """)
        let connection = try Connection(config.arguments, launcher: ["/bin/sh", "-c", "exec \"$@\" 7</dev/null", "sh"])
        // The server itself holds fd 7, so the test means something.
        var held = false
        for _ in 0..<100 where !held {
            var status = stat()
            held = lstat("/proc/\(connection.server.pid)/fd/7", &status) == 0
            if !held { usleep(20_000) }
        }
        #expect(held, "the server was started with fd 7")
        try connection.send("fds\r\n")
        connection.shutdownWrite()
        #expect(connection.replyText() == "+OK\r\n0\n1\n2\n")
        #expect(connection.finish() == 0)
    }

    /// With ack=service the program writes its own `+`; the server writes nothing.
    @Test func serviceAcknowledges() throws {
        let config = try ConfigurationFile("""
            plus ack=service exec /bin/sh sh -c "printf '+Ready\\\\r\\\\n'; cat"
            """)
        let connection = try Connection(config.arguments)
        try connection.send("plus\r\nping")
        connection.shutdownWrite()
        #expect(connection.replyText() == "+Ready\r\nping")
        #expect(connection.finish() == 0)
    }

    /// A program that is missing, not executable, a directory, or not a format
    /// the kernel can run is refused before any `+` (the anchors send `+Go`
    /// first, then fail).
    /// "Executable" means executable by the service's user: a root-owned 0700
    /// program is refused for `user=nobody` ("private").
    @Test(arguments: [("missing", 0o755), ("directory", 0o755), ("plain", 0o644), ("text", 0o755), ("private", 0o700)] as [(String, mode_t)])
    func unrunnableProgram(_ kind: String, _ mode: mode_t) throws {
        let config = try ConfigurationFile("")
        let path = config.sibling(kind)
        switch kind {
        case "directory": try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        case "plain", "private": try "#!/bin/sh\necho hi\n".write(toFile: path, atomically: false, encoding: .utf8)
        case "text": try "echo no interpreter line\n".write(toFile: path, atomically: false, encoding: .utf8)
        default: break
        }
        chmod(path, mode)
        chmod(config.directory, 0o755)
        let user = kind == "private" ? "user=nobody " : ""
        try "broken \(user)exec \(path) broken\n".write(toFile: config.path, atomically: false, encoding: .utf8)
        #expect(try exchange("broken\r\n", arguments: config.arguments) == unavailable)
    }

    /// A program that exits at once: `+`, then a clean close.
    @Test func programExitsAtOnce() throws {
        let config = try ConfigurationFile("quick exec /bin/true true")
        #expect(try exchange("quick\r\n", arguments: config.arguments) == "+OK\r\n")
    }
}

@Suite struct ForwardTests {
    /// 10 MiB each way through the relay to a TCP echo server, intact and in order.
    @Test func tcpTenMiBEachWay() throws {
        let backend = try Backend(serve: Backend.echo)
        let config = try ConfigurationFile("echo forward \(backend.target)")
        let connection = try Connection(config.arguments)
        try connection.send("echo\r\n")
        let (bytes, end) = sendAndReceive(connection, tenMiB)
        #expect(end == .endOfStream, "the backend's close is passed on")
        #expect(bytes.count == 5 + tenMiB.count)
        #expect(bytes.dropFirst(5).elementsEqual(tenMiB), "payload intact")
        #expect(connection.finish() == 0)
    }

    /// The same to a Unix socket, with the bytes pipelined after the request
    /// line forwarded first.
    @Test func unixSocket() throws {
        let config = try ConfigurationFile("")
        let backend = try Backend(unixPath: config.sibling("echo.sock"), serve: Backend.echo)
        try "local forward \(backend.target)\n".write(toFile: config.path, atomically: false, encoding: .utf8)
        let connection = try Connection(config.arguments)
        try connection.send(Array("local\r\nearly bytes|".utf8))
        let (bytes, end) = sendAndReceive(connection, tenMiB)
        #expect(end == .endOfStream)
        #expect(bytes.prefix(17) == Array("+OK\r\nearly bytes|".utf8)[...])
        #expect(bytes.dropFirst(17).elementsEqual(tenMiB))
        #expect(connection.finish() == 0)
    }

    /// The backend closes its side first; the client still sends, and every byte
    /// it sends after that arrives.
    @Test func backendHalfCloses() throws {
        let counted = Counter()
        let backend = try Backend { fd in
            _ = "hello".withCString { send(fd, $0, 5, Int32(MSG_NOSIGNAL)) }
            shutdown(fd, Int32(SHUT_WR))
            counted.set(readToEnd(fd).count)
        }
        let config = try ConfigurationFile("hc forward \(backend.target)")
        let connection = try Connection(config.arguments)
        try connection.send("hc\r\n")
        let (bytes, end) = connection.receiveAll(timeout: 10)
        #expect(String(decoding: bytes, as: UTF8.self) == "+OK\r\nhello")
        #expect(end == .endOfStream, "the backend's half-close reaches the client")
        try connection.send(pseudoRandomBytes(100_000))
        connection.shutdownWrite()
        #expect(connection.finish() == 0)
        #expect(counted.wait() == 100_000, "the client's bytes after the backend's half-close")
    }

    /// The client closes its side first; the backend sees end of input and still
    /// answers, and the answer reaches the client.
    @Test func clientHalfCloses() throws {
        let backend = try Backend { fd in
            let answer = "got \(readToEnd(fd).count)"
            _ = answer.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        }
        let config = try ConfigurationFile("count forward \(backend.target)")
        #expect(try exchange("count\r\n0123456789", arguments: config.arguments) == "+OK\r\ngot 10")
    }

    /// A backend that refuses connections gets `-` and never a `+`.
    @Test func backendRefuses() throws {
        let listener = try listeningSocket()
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        close(listener)  // The port is now free: connecting is refused.
        let config = try ConfigurationFile("down forward 127.0.0.1:\(UInt16(bigEndian: address.sin_port))")
        #expect(try exchange("down\r\n", arguments: config.arguments) == unavailable)
        let unix = try ConfigurationFile("down forward /nonexistent/tcpmuxd.sock")
        #expect(try exchange("down\r\n", arguments: unix.arguments) == unavailable)
    }
}

@Suite struct AccessEndToEndTests {
    let table = """
        open tcpmux
        lan allow=10.0.0.0/8 tcpmux
        loop allow=127.0.0.0/8,::1 tcpmux
        inside local=127.0.0.1 tcpmux
        other local=127.0.0.2 tcpmux
        hidden hidden tcpmux
        """

    /// By client network: the refused client gets exactly the unknown-name line.
    @Test func byClientNetwork() throws {
        let config = try ConfigurationFile(table)
        #expect(try exchange("loop\r\nhelp\r\n", arguments: config.arguments) == "+OK\r\nopen\r\nloop\r\ninside\r\n")
        #expect(try exchange("lan\r\n", arguments: config.arguments) == unknown)
        #expect(try exchange("nosuchservice\r\n", arguments: config.arguments) == unknown)
    }

    /// By local address: 127.0.0.1 and 127.0.0.2 are both loopback, so one test
    /// can arrive on two local addresses (the inside-interface lesson of CERT
    /// VU#184540).
    @Test func byLocalAddress() throws {
        let config = try ConfigurationFile(table)
        let second = Endpoint.ipv4("127.0.0.2")
        #expect(try exchange("inside\r\n", arguments: config.arguments) == "+OK\r\n-No request received\r\n")
        #expect(try exchange("inside\r\n", arguments: config.arguments, endpoint: second) == unknown)
        #expect(try exchange("other\r\n", arguments: config.arguments, endpoint: second, source: "127.0.0.2") == "+OK\r\n-No request received\r\n")
        #expect(try exchange("HELP\r\n", arguments: config.arguments, endpoint: second, source: "127.0.0.2") == "open\r\nloop\r\nother\r\n")
    }

    /// A hidden service is not listed, yet can be selected.
    @Test func hiddenService() throws {
        let config = try ConfigurationFile(table)
        #expect(try exchange("HIDDEN\r\nhelp\r\n", arguments: config.arguments) == "+OK\r\nopen\r\nloop\r\ninside\r\n")
    }

    @Test func helpOff() throws {
        let config = try ConfigurationFile("open tcpmux\nHELP off")
        #expect(try exchange("HELP\r\n", arguments: config.arguments) == unknown)
    }

    /// Over IPv6, `allow=::1` admits the client; the IPv4 rule does not.
    @Test func ipv6Client() throws {
        let config = try ConfigurationFile(table)
        #expect(try exchange("loop\r\nlan\r\n", arguments: config.arguments, endpoint: .ipv6("::1")) == "+OK\r\n" + unknown)
    }
}

@Suite struct ConfigurationFailureTests {
    /// An invalid or missing file fails closed: a `-` line, never a partial table.
    @Test func invalidFileFailsClosed() throws {
        let config = try ConfigurationFile("good tcpmux\nbad frobnicate tcpmux")
        #expect(try exchange("good\r\n", arguments: config.arguments) == tableUnavailable)
        #expect(try exchange("HELP\r\n", arguments: config.arguments) == tableUnavailable)
        #expect(try exchange("HELP\r\n", arguments: ["-f", "/nonexistent/tcpmuxd.conf"]) == tableUnavailable)
    }

    /// As sshd's StrictModes: a root server refuses a file that anyone but root
    /// could write, by its mode (group or others) or by its owner, and `-n` says
    /// so with exit 1; a root-owned 0644 file loads. Mode and owner as
    /// (mode, uid).
    @Test(.enabled(if: runningAsRoot, "only a root server checks who could write its configuration"),
          arguments: [(0o666, 0), (0o660, 0), (0o620, 0), (0o602, 0), (0o644, 65534), (0o600, 1), (0o644, 0)] as [(mode_t, uid_t)])
    func writableFileRefusedByRoot(_ mode: mode_t, _ owner: uid_t) throws {
        let config = try ConfigurationFile("open tcpmux", mode: mode)
        try check("chown", chown(config.path, owner, 0))
        let refused = mode & 0o022 != 0 || owner != 0
        let reply = try exchange("HELP\r\n", arguments: config.arguments)
        #expect(reply == (refused ? tableUnavailable : "open\r\n"))
        let checked = try runWithPipes(["-n"] + config.arguments, input: "")
        #expect(checked.status == (refused ? 1 : 0))
        #expect(checked.stderr.isEmpty != refused, "-n says why: \(checked.stderr)")
    }

    /// Not root: the file is the user's own, and its mode is the user's business.
    @Test(.enabled(if: !runningAsRoot, "run as root, writableFileRefusedByRoot applies"))
    func writableFileLoadedByUser() throws {
        let config = try ConfigurationFile("open tcpmux", mode: 0o666)
        #expect(try exchange("HELP\r\n", arguments: config.arguments) == "open\r\n")
    }

    /// -n: the normalized table and exit 0, or every error and exit 1.
    @Test func checkMode() throws {
        let valid = try ConfigurationFile("# comment\nEcho   allow=127.0.0.1  tcpmux\nweb forward [::1]:80")
        let good = try runWithPipes(["-n", "-f", valid.path], input: "")
        #expect(good.status == 0)
        #expect(good.stdout == "# \(valid.path)\nEcho allow=127.0.0.1 tcpmux\nweb forward [::1]:80\n")
        #expect(good.stderr == "")

        let invalid = try ConfigurationFile("a tcpmux\nb exec bin/b\nA tcpmux")
        let bad = try runWithPipes(["-n", "-f", invalid.path], input: "")
        #expect(bad.status == 1)
        #expect(bad.stdout == "")
        #expect(bad.stderr == "\(invalid.path):2: program path must be absolute: \"bin/b\"\n\(invalid.path):3: duplicate service name \"A\" (first at line 1)\n")

        let missing = try runWithPipes(["-n", "-f", "/nonexistent/tcpmuxd.conf"], input: "")
        #expect(missing.status == 1)
        #expect(missing.stderr == "in.tcpmuxd: /nonexistent/tcpmuxd.conf: No such file or directory\n")
    }
}
