// The PROXY protocol header on forward services (proxy=v1|v2, HAProxy's
// doc/proxy-protocol.txt), through the real binary: a backend written here that
// parses the header itself, and the real consumers nginx and haproxy.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension Tool {
    static let nginx = Tool("nginx", package: "nginx", ["/usr/sbin/nginx"])
    static let haproxy = Tool("haproxy", package: "haproxy", ["/usr/sbin/haproxy"])
    /// Its fault injection makes the header's write(2) fail, for real.
    static let strace = Tool("strace", package: "strace", ["/usr/bin/strace"])
}

/// Where the client (127.0.0.2, so that it differs from the relay's own
/// 127.0.0.1) and the listener it connected to are: getsockname and getpeername
/// of the client's socket.
private func ends(of connection: Connection) -> (client: String, local: String, clientPort: UInt16, localPort: UInt16) {
    func name(_ peer: Bool) -> (String, UInt16) {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                peer ? getpeername(connection.client, $0, &length) : getsockname(connection.client, $0, &length)
            }
        }
        return withUnsafeBytes(of: storage) { raw in
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            if storage.ss_family == sa_family_t(AF_INET) {
                var address = raw.load(as: sockaddr_in.self)
                inet_ntop(AF_INET, &address.sin_addr, &text, socklen_t(text.count))
                return (cText(text), UInt16(bigEndian: address.sin_port))
            }
            var address = raw.load(as: sockaddr_in6.self)
            inet_ntop(AF_INET6, &address.sin6_addr, &text, socklen_t(text.count))
            return (cText(text), UInt16(bigEndian: address.sin6_port))
        }
    }
    let (client, clientPort) = name(false)
    let (local, localPort) = name(true)
    return (client, local, clientPort, localPort)
}

/// A NUL-terminated C string's text.
private func cText(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Reads exactly `count` bytes (fewer at the end of the stream).
private func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: count)
    while bytes.count < count {
        let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - bytes.count, 0) }
        if received < 0 && errno == EINTR { continue }
        if received <= 0 { break }
        bytes += buffer[..<received]
    }
    return bytes
}

/// The header as a receiver reads it (section 2 of the specification): exactly
/// its bytes, nothing after them. Returns the raw bytes and what they say, as
/// `v1 TCP4 SRC:SPORT DST:DPORT` or `v2 TCP6 ... alpn=NAME`; nil if malformed.
private func readProxyHeader(_ fd: Int32) -> (raw: [UInt8], meaning: String)? {
    let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    // The first byte tells the versions apart: CR (v2) or `P` (v1).
    var raw = readExactly(fd, 1)
    if raw == [0x0D] {
        raw += readExactly(fd, 15)
        guard raw.count == 16, raw.prefix(12).elementsEqual(signature) else { return nil }
        guard raw[12] == 0x21 else { return nil }
        let length = Int(raw[14]) << 8 | Int(raw[15])
        let rest = readExactly(fd, length)
        guard rest.count == length else { return nil }
        raw += rest
        let size: Int
        let family: Int32
        switch raw[13] {
        case 0x11: (size, family) = (4, AF_INET)
        case 0x21: (size, family) = (16, AF_INET6)
        default: return nil
        }
        func text(_ bytes: ArraySlice<UInt8>) -> String {
            var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            _ = Array(bytes).withUnsafeBytes { inet_ntop(family, $0.baseAddress, &out, socklen_t(out.count)) }
            return cText(out)
        }
        func port(_ at: Int) -> Int { Int(rest[at]) << 8 | Int(rest[at + 1]) }
        var meaning = "v2 \(size == 4 ? "TCP4" : "TCP6") \(text(rest[0..<size])):\(port(2 * size)) \(text(rest[size..<2 * size])):\(port(2 * size + 2))"
        var tlv = 2 * size + 4
        while tlv + 3 <= rest.count {
            let type = rest[tlv], valueLength = Int(rest[tlv + 1]) << 8 | Int(rest[tlv + 2])
            guard tlv + 3 + valueLength <= rest.count else { return nil }
            let value = String(decoding: rest[(tlv + 3)..<(tlv + 3 + valueLength)], as: UTF8.self)
            meaning += type == 0x01 ? " alpn=\(value)" : " tlv\(type)=\(value)"
            tlv += 3 + valueLength
        }
        guard tlv == rest.count else { return nil }
        return (raw, meaning)
    }
    // Version 1: up to CRLF, within 107 bytes, a byte at a time.
    guard raw == [UInt8(ascii: "P")] else { return nil }
    while !(raw.count >= 2 && raw.suffix(2) == [0x0D, 0x0A]) {
        guard raw.count < 107 else { return nil }
        let next = readExactly(fd, 1)
        guard next.count == 1 else { return nil }
        raw += next
    }
    let fields = String(decoding: raw.dropLast(2), as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
    if fields == ["PROXY", "UNKNOWN"] { return (raw, "v1 UNKNOWN") }
    guard fields.count == 6, fields[0] == "PROXY", fields[1] == "TCP4" || fields[1] == "TCP6" else { return nil }
    return (raw, "v1 \(fields[1]) \(fields[2]):\(fields[4]) \(fields[3]):\(fields[5])")
}

/// What a backend received: the header's raw bytes, and the first bytes after it.
private final class Received: @unchecked Sendable {
    private let lock = NSLock()
    private var header: [UInt8] = []
    private var after: [UInt8] = []
    func record(header: [UInt8]) { lock.withLock { self.header = header } }
    func record(after bytes: [UInt8]) { lock.withLock { if after.count < 64 { after += bytes.prefix(64 - after.count) } } }
    var value: (header: [UInt8], after: [UInt8]) { lock.withLock { (header, after) } }
}

/// A backend that reads the PROXY header, answers with what it says on a line,
/// then echoes everything after it until end of input.
private func proxyBackend(_ received: Received) -> @Sendable (Int32) -> Void {
    { fd in
        var timeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let meaning: String
        if let header = readProxyHeader(fd) {
            received.record(header: header.raw)
            meaning = header.meaning
        } else {
            meaning = "no valid PROXY header"
        }
        let line = Array((meaning + "\n").utf8)
        _ = line.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        echoUntilEnd(fd) { received.record(after: $0) }
    }
}

/// A backend on [::1] for one connection, served on its own thread.
private final class IPv6Backend: @unchecked Sendable {
    let port: UInt16
    private let done: Background

    init(serve: @escaping @Sendable (Int32) -> Void) throws {
        let listener = try listeningSocket(.ipv6("::1"))
        var address = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = UInt16(bigEndian: address.sin6_port)
        done = Background {
            defer { close(listener) }
            var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&entry, 1, 15_000) > 0 else { return }
            let connection = spawnLock.withLock { closeOnExec(accept(listener, nil, nil)) }
            guard connection >= 0 else { return }
            serve(connection)
            close(connection)
        }
    }

    func join() { done.join() }
}

@Suite struct ProxyProtocolTests {
    /// The backend reads the header first, and it names the real client
    /// (127.0.0.2 and its port) and the address and port it arrived on; the bytes
    /// the client pipelined behind its request line come after the header.
    @Test(arguments: ["v1", "v2"])
    func backendSeesTheRealClient(_ version: String) throws {
        let received = Received()
        let backend = try Backend(serve: proxyBackend(received))
        let config = try ConfigurationFile("web proxy=\(version) forward \(backend.target)")
        let connection = try Connection(config.arguments, source: "127.0.0.2")
        let (client, local, clientPort, localPort) = ends(of: connection)
        #expect(client == "127.0.0.2" && local == "127.0.0.1")
        // One segment: the request and the bytes behind it.
        try connection.send("web\r\npipelined")
        connection.shutdownWrite()
        let alpn = version == "v2" ? " alpn=web" : ""
        let expected = "+OK\r\n\(version) TCP4 127.0.0.2:\(clientPort) 127.0.0.1:\(localPort)\(alpn)\npipelined"
        #expect(connection.replyText() == expected)
        #expect(connection.finish() == 0)
        let (header, after) = received.value
        if version == "v1" {
            #expect(header == Array("PROXY TCP4 127.0.0.2 127.0.0.1 \(clientPort) \(localPort)\r\n".utf8))
        } else {
            let ports = [UInt8(clientPort >> 8), UInt8(clientPort & 0xFF), UInt8(localPort >> 8), UInt8(localPort & 0xFF)]
            #expect(header == [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x12,
                               127, 0, 0, 2, 127, 0, 0, 1] + ports + [0x01, 0x00, 0x03] + Array("web".utf8))
        }
        #expect(after == Array("pipelined".utf8), "the header once, then the client's bytes unchanged")
    }

    /// After the header the stream is unchanged: 1 MiB up and the same 1 MiB
    /// echoed down, intact and in order.
    @Test(arguments: ["v1", "v2"])
    func oneMiBEachWay(_ version: String) throws {
        let payload = pseudoRandomBytes(1 << 20, seed: 11)
        let backend = try Backend(serve: proxyBackend(Received()))
        let config = try ConfigurationFile("bulk proxy=\(version) forward \(backend.target)")
        let connection = try Connection(config.arguments, source: "127.0.0.2")
        let (_, _, clientPort, localPort) = ends(of: connection)
        try connection.send("bulk\r\n")
        let (bytes, end) = sendAndReceive(connection, payload)
        let alpn = version == "v2" ? " alpn=bulk" : ""
        let prefix = Array("+OK\r\n\(version) TCP4 127.0.0.2:\(clientPort) 127.0.0.1:\(localPort)\(alpn)\n".utf8)
        #expect(end == .endOfStream)
        #expect(bytes.count == prefix.count + payload.count)
        // Compared as text and as a flag: a failure must not print 1 MiB.
        #expect(String(decoding: bytes.prefix(prefix.count), as: UTF8.self) == String(decoding: prefix, as: UTF8.self))
        let intact = bytes.dropFirst(prefix.count).elementsEqual(payload)
        #expect(intact, "payload intact")
        #expect(connection.finish() == 0)
    }

    /// A client and a backend on ::1: the header is TCP6 (v1) or family 0x21 (v2).
    @Test(arguments: ["v1", "v2"])
    func ipv6(_ version: String) throws {
        let received = Received()
        let backend = try IPv6Backend(serve: proxyBackend(received))
        let config = try ConfigurationFile("six proxy=\(version) forward [::1]:\(backend.port)")
        let connection = try Connection(config.arguments, endpoint: .ipv6("::1"))
        let (client, local, clientPort, localPort) = ends(of: connection)
        #expect(client == "::1" && local == "::1")
        try connection.send("six\r\nafter")
        connection.shutdownWrite()
        let alpn = version == "v2" ? " alpn=six" : ""
        #expect(connection.replyText() == "+OK\r\n\(version) TCP6 ::1:\(clientPort) ::1:\(localPort)\(alpn)\nafter")
        #expect(connection.finish() == 0)
        backend.join()
        if version == "v1" {
            #expect(received.value.header == Array("PROXY TCP6 ::1 ::1 \(clientPort) \(localPort)\r\n".utf8))
        }
    }

    /// A Unix-socket backend gets the same header: it describes the TCP client,
    /// not the relay's connection to the backend.
    @Test(arguments: ["v1", "v2"])
    func unixSocketBackend(_ version: String) throws {
        let config = try ConfigurationFile("")
        let backend = try Backend(unixPath: config.sibling("proxy.sock"), serve: proxyBackend(Received()))
        try writeText("local proxy=\(version) forward \(backend.target)\n", to: config.path)
        let connection = try Connection(config.arguments, source: "127.0.0.2")
        let (_, _, clientPort, localPort) = ends(of: connection)
        try connection.send("local\r\nover unix")
        connection.shutdownWrite()
        let alpn = version == "v2" ? " alpn=local" : ""
        #expect(connection.replyText() == "+OK\r\n\(version) TCP4 127.0.0.2:\(clientPort) 127.0.0.1:\(localPort)\(alpn)\nover unix")
        #expect(connection.finish() == 0)
    }

    /// The v2 TLV (PP2_TYPE_ALPN) carries the service name as configured, not
    /// as the client wrote it: names match without regard to case.
    @Test func alpnIsTheConfiguredName() throws {
        let backend = try Backend(serve: proxyBackend(Received()))
        let config = try ConfigurationFile("Web proxy=v2 forward \(backend.target)")
        let connection = try Connection(config.arguments, source: "127.0.0.2")
        let (_, _, clientPort, localPort) = ends(of: connection)
        try connection.send("wEB\r\n")
        connection.shutdownWrite()
        #expect(connection.replyText() == "+OK\r\nv2 TCP4 127.0.0.2:\(clientPort) 127.0.0.1:\(localPort) alpn=Web\n")
        #expect(connection.finish() == 0)
    }

    /// The connection's log line says which header was sent; from a shell (fd 0
    /// a pipe, no addresses) the header is v1's `PROXY UNKNOWN`.
    @Test func logLineNamesTheVersion() throws {
        let received = Received()
        let backend = try Backend(serve: proxyBackend(received))
        let config = try ConfigurationFile("web proxy=v1 forward \(backend.target)")
        let run = try runWithPipes(["-d"] + config.arguments, input: "web\r\n")
        #expect(run.status == 0)
        // Logged when the relay starts, and again when it ends.
        #expect(run.stderr.contains("peer (not a socket): \"web\" selected web; PROXY v1 header sent (15 bytes); forward \(backend.target)\n"),
                "stderr was: \(run.stderr)")
        #expect(run.stderr.contains("peer (not a socket): forward \(backend.target) ended: "), "stderr was: \(run.stderr)")
        #expect(received.value.header == Array("PROXY UNKNOWN\r\n".utf8))
    }

    /// Without proxy=, the backend gets the client's bytes and nothing else.
    @Test func noOptionNoHeader() throws {
        let backend = try Backend(serve: Backend.echo)
        let config = try ConfigurationFile("web forward \(backend.target)")
        let connection = try Connection(config.arguments, source: "127.0.0.2")
        try connection.send("web\r\nGET / HTTP/1.0\r\n\r\n")
        connection.shutdownWrite()
        #expect(connection.replyText() == "+OK\r\nGET / HTTP/1.0\r\n\r\n")
        #expect(connection.finish() == 0)
    }
}

/// A connection to in.tcpmuxd run under strace, whose first write(2) and
/// sendto(2) (a socket is written with send; with `-d` off, the PROXY header to
/// the backend is the first thing written) fail with EPIPE.
private final class FailingHeaderConnection: ClientSocket {
    let client: Int32
    let server: Child

    init(_ arguments: [String]) throws {
        let listener = try listeningSocket()
        defer { close(listener) }
        client = try connectSocket(to: listener, from: "127.0.0.2")
        let accepted = try check("accept", spawnLock.withLock { closeOnExec(accept(listener, nil, nil)) })
        defer { close(accepted) }
        server = try Child([try Tool.strace.require(), "-qq", "-f", "-o", "/dev/null", "-e", "trace=write,sendto",
                            "-e", "inject=write,sendto:error=EPIPE:when=1", serverBinary] + arguments,
                           stdin: accepted, stdout: accepted, stderr: accepted)
    }

    deinit { close(client) }
}

@Suite(needs([.strace])) struct ProxyHeaderFailureTests {
    /// A header that cannot be written fails the hand-off before any `+`: the
    /// client gets the line a refusing backend gets, the backend no byte.
    @Test func headerWriteFailureRefuses() throws {
        let received = Received()
        let reached = Counter()
        let backend = try Backend { fd in
            received.record(after: readToEnd(fd))
            reached.set(1)
        }
        let config = try ConfigurationFile("web proxy=v2 forward \(backend.target)")
        let connection = try FailingHeaderConnection(config.arguments)
        try connection.send("web\r\nsecret")
        connection.shutdownWrite()
        #expect(connection.replyText() == "-Service temporarily unavailable\r\n")
        #expect(connection.server.wait() == 0)
        #expect(reached.wait() == 1, "the backend was connected to")
        #expect(received.value.after.isEmpty, "the backend got nothing: no header, no client byte")
    }
}

/// A real consumer started for one test on a free loopback port, with its
/// configuration, pid and logs in a temporary directory; stopped (SIGTERM, then
/// waited for) when the value goes.
private final class Consumer {
    let directory: ConfigurationFile
    let port: UInt16
    let process: Child

    init(_ tool: Tool, arguments: (_ directory: ConfigurationFile, _ port: UInt16) throws -> [String]) throws {
        let directory = try ConfigurationFile("")
        let port = try freePort()
        self.directory = directory
        self.port = port
        let binary = try tool.require()
        let arguments = try arguments(directory, port)
        let output = try check("open", spawnLock.withLock {
            closeOnExec(open(directory.sibling("output.log"), O_WRONLY | O_CREAT | O_TRUNC, 0o644))
        })
        let null = try check("open", spawnLock.withLock { closeOnExec(open("/dev/null", O_RDONLY)) })
        defer { close(output); close(null) }
        process = try Child([binary] + arguments, stdin: null, stdout: output, stderr: output)
        // Listening once a connection to its port succeeds (at most 15 s).
        let end = now() + 15
        while !canConnect(port) {
            if process.hasExited || now() > end {
                let log = (try? readText(directory.sibling("output.log"))) ?? ""
                throw ExampleError(description: "\(tool.name) did not start listening on 127.0.0.1:\(port): \(log)")
            }
            usleep(20_000)
        }
    }

    // Also when init throws after the spawn: the instance is whole by then.
    // Only a child not yet reaped is signalled, so its pid is still its own.
    deinit {
        if !process.hasExited {
            kill(process.pid, SIGTERM)
            _ = process.wait()
        }
    }

    /// A TCP connection to 127.0.0.1:port opens (and is closed at once).
    private func canConnect(_ port: UInt16) -> Bool {
        let fd = spawnLock.withLock { closeOnExec(socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }
}

/// The README's fenced block in `language` (exactly one), with its example
/// address `127.0.0.1:EXAMPLE` moved to the test's port: the tests run the
/// examples as the README shows them.
private func readmeExample(_ language: String, examplePort: UInt16, port: UInt16) throws -> String {
    let readme = try readText("\(packageRoot)/README.md")
    let blocks = readme.components(separatedBy: "```\(language)\n")
    guard blocks.count == 2, let block = blocks[1].components(separatedBy: "\n```").first else {
        throw ExampleError(description: "README.md: expected one ```\(language) block, found \(blocks.count - 1)")
    }
    return try substituting("127.0.0.1:\(examplePort)", "127.0.0.1:\(port)", in: block + "\n", of: "README.md")
}

/// The README's nginx server block inside the least main configuration that
/// runs it: foreground, one process, pid, logs and temporary files in the
/// directory, the default (combined) access log format.
private func nginxConfiguration(_ directory: ConfigurationFile, _ port: UInt16) throws -> String {
    let dir = directory.directory
    return """
    daemon off;
    master_process off;
    pid \(dir)/nginx.pid;
    error_log \(dir)/error.log;
    events { worker_connections 64; }
    http {
        client_body_temp_path \(dir)/body;
        proxy_temp_path \(dir)/proxy;
        fastcgi_temp_path \(dir)/fastcgi;
        uwsgi_temp_path \(dir)/uwsgi;
        scgi_temp_path \(dir)/scgi;
        access_log \(dir)/access.log;
    \(try readmeExample("nginx", examplePort: 8080, port: port))
    }

    """
}

/// An HTTP/1.0 request through in.tcpmuxd (proxy=`version`) to `port`, from
/// 127.0.0.2: the reply after the `+OK`, and the client's port.
private func request(through version: String, to port: UInt16) throws -> (response: String, clientPort: UInt16) {
    let config = try ConfigurationFile("web proxy=\(version) forward 127.0.0.1:\(port)")
    let connection = try Connection(config.arguments, source: "127.0.0.2")
    let clientPort = ends(of: connection).clientPort
    try connection.send("web\r\nGET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
    // HTTP/1.0: the consumer answers and closes; the relay passes the close on.
    let reply = connection.replyText()
    #expect(connection.finish() == 0)
    return (reply, clientPort)
}

@Suite(.serialized) struct ProxyProtocolConsumerTests {
    /// nginx, configured as the README shows, reports the real client
    /// (127.0.0.2 and its port) in its variables and its access log.
    @Test(needs([.nginx]), arguments: ["v1", "v2"])
    func nginx(_ version: String) throws {
        let nginx = try Consumer(.nginx) { directory, port in
            try writeText(try nginxConfiguration(directory, port), to: directory.sibling("nginx.conf"))
            return ["-p", directory.directory, "-e", directory.sibling("error.log"), "-c", directory.sibling("nginx.conf")]
        }
        let (response, clientPort) = try request(through: version, to: nginx.port)
        #expect(response.hasPrefix("+OK\r\nHTTP/1.1 200 OK\r\n"), "response: \(response)")
        #expect(response.hasSuffix("\r\n\r\n127.0.0.2:\(clientPort)\n"), "response: \(response)")
        let log = try readText(nginx.directory.sibling("access.log"))
        #expect(log.hasPrefix("127.0.0.2 - - ["), "access log: \(log)")
        #expect(log.contains("\"GET / HTTP/1.0\" 200 "), "access log: \(log)")
    }

    /// haproxy, configured as the README shows (`accept-proxy`), reports the real
    /// client as `src` and `src_port`.
    @Test(needs([.haproxy]), arguments: ["v1", "v2"])
    func haproxy(_ version: String) throws {
        let haproxy = try Consumer(.haproxy) { directory, port in
            try writeText(try readmeExample("haproxy", examplePort: 8081, port: port), to: directory.sibling("haproxy.cfg"))
            return ["-db", "-f", directory.sibling("haproxy.cfg")]
        }
        let (response, clientPort) = try request(through: version, to: haproxy.port)
        #expect(response.hasPrefix("+OK\r\nHTTP/1.1 200 OK\r\n"), "response: \(response)")
        #expect(response.hasSuffix("\r\n\r\n127.0.0.2:\(clientPort)\n"), "response: \(response)")
    }
}
