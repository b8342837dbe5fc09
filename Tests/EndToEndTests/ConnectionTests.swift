// The real binary behind a real socket on fd 0, 1 and 2, exact bytes on the wire.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

let unknown = "-Service not available\r\n"

@Suite struct ProtocolTests {
    /// RFC 1078: "The service name is never case sensitive", HELP included (the
    /// seed matched HELP case-sensitively). HELP gets the names and no status line.
    @Test(arguments: ["HELP", "help", "HeLp"])
    func help(_ request: String) throws {
        #expect(try exchange("\(request)\r\n") == "tcpmux\r\n")
    }

    /// The built-in service: `+`, then TCPMUX again on the same connection.
    @Test func tcpmuxNestedOnce() throws {
        #expect(try exchange("TcpMux\r\nHELP\r\n") == "+OK\r\ntcpmux\r\n")
    }

    /// Five nested requests and HELP in one write: every byte after a CRLF is left
    /// for the next request (the BSD inetds read in bulk and swallow them; xinetd
    /// breaks on pipelined data).
    @Test func tcpmuxNestedFiveTimesPipelined() throws {
        let connection = try Connection()
        try connection.send(String(repeating: "tcpmux\r\n", count: 5) + "HELP\r\n")
        // No half-close: the replies must not depend on the client closing first.
        #expect(connection.replyText() == String(repeating: "+OK\r\n", count: 5) + "tcpmux\r\n")
        #expect(connection.finish() == 0)
    }

    /// Nesting is bounded: the 17th nested request is refused.
    @Test func nestingBound() throws {
        #expect(try exchange(String(repeating: "tcpmux\r\n", count: 17) + "HELP\r\n") ==
                String(repeating: "+OK\r\n", count: 16) + "-Too many nested tcpmux requests\r\n")
    }

    @Test func unknownService() throws {
        #expect(try exchange("finger\r\n") == unknown)
        #expect(try exchange("tcpmux2\r\n") == unknown)
    }

    /// A refusal after a nested `+` still ends the conversation cleanly.
    @Test func rejectAfterNesting() throws {
        #expect(try exchange("tcpmux\r\nno such\r\n") == "+OK\r\n-Service name contains white space\r\n")
    }

    /// Over IPv6 too (the peer is logged in brackets).
    @Test func ipv6() throws {
        let connection = try Connection(endpoint: .ipv6("::1"))
        try connection.send("help\r\n")
        #expect(connection.replyText() == "tcpmux\r\n")
        #expect(connection.finish() == 0)
    }
}

/// A request sent whole and the exact reply expected.
struct Exchange: CustomTestStringConvertible, Sendable {
    let request: String
    let reply: String
    init(_ request: String, _ reply: String) { self.request = request; self.reply = reply }
    var testDescription: String { "\"\(request.debugDescription.dropFirst().dropLast())\"" }
}

/// Every class of bad input: one `-reason` line, a clean close, exit 0.
let badInputs: [Exchange] = [
    Exchange("tcpmux\n", "-Request line must end with CRLF, not a bare LF (use telnet, nc -C, ncat -C or socat's crlf option)\r\n"),
    Exchange("tcpmux\rHELP\r\n", "-Carriage return not followed by line feed\r\n"),
    Exchange("tcp\0mux\r\n", "-Service name contains a control character\r\n"),
    Exchange("tcp\u{1B}mux\r\n", "-Service name contains a control character\r\n"),
    Exchange("tcp\u{7F}\r\n", "-Service name contains a control character\r\n"),
    Exchange("tcp mux\r\n", "-Service name contains white space\r\n"),
    Exchange("tcpmux\t\r\n", "-Service name contains white space\r\n"),
    Exchange("tcpmüx\r\n", "-Service name contains a non-ASCII byte\r\n"),
    Exchange("\r\n", "-Empty service name\r\n"),
    Exchange(String(repeating: "a", count: 257) + "\r\n", "-Service name longer than 256 bytes\r\n"),
    Exchange(String(repeating: "a", count: 256) + "\r\n", unknown),
    Exchange("tcpmux", "-Connection closed before the end of the request line\r\n"),
    Exchange("tcpmux\r", "-Connection closed before the end of the request line\r\n"),
    Exchange("", "-No request received\r\n"),
]

@Suite struct BadInputTests {
    @Test(arguments: badInputs)
    func rejected(_ row: Exchange) throws {
        let received = try exchange(row.request)
        #expect(received == row.reply)
        #expect(isPrintableLines(received))
    }

    /// An overlong name is refused at the byte past the cap, while the client is
    /// still sending and long before the deadline: no truncation, no waiting for
    /// a line end (the BSD inetds truncate at 258 and carry on).
    @Test func overlongLineRefusedAtOnce() throws {
        let connection = try Connection(["-t", "30"])
        try connection.send(String(repeating: "x", count: 300))
        let (bytes, end) = connection.receiveAll(timeout: 10)
        #expect(String(decoding: bytes, as: UTF8.self) == "-Service name longer than 256 bytes\r\n")
        #expect(end == .endOfStream)
        #expect(connection.finish() == 0)
    }

    /// A bad byte is refused at once, the rest of the line never awaited.
    @Test func badByteRefusedAtOnce() throws {
        let connection = try Connection(["-t", "30"])
        try connection.send("tcp\0")
        let (bytes, end) = connection.receiveAll(timeout: 10)
        #expect(String(decoding: bytes, as: UTF8.self) == "-Service name contains a control character\r\n")
        #expect(end == .endOfStream)
        #expect(connection.finish() == 0)
    }

    /// Garbage pipelined after a refused request, still in flight when we reply:
    /// the client gets the whole `-` line, a FIN, and no reset even while it keeps
    /// its side open until the server has exited (the seed exits with unread input
    /// and the kernel resets the connection).
    @Test func pipelinedGarbageAfterReject() throws {
        let connection = try Connection()
        try connection.send("nonsense\r\n" + String(repeating: "garbage ", count: 32768))
        #expect(connection.replyText() == unknown)
        #expect(connection.server.wait() == 0)
        #expect(connection.pendingError() == 0, "the connection was reset")
        #expect(connection.finish() == 0)
    }
}

@Suite struct SlowReaderTests {
    /// A client that asks for a long HELP list and never reads it cannot hold
    /// the process: poll(2) saying "writable" means room for some bytes, not for
    /// the whole reply, and a blocking write(2) of the rest would wait for the
    /// client forever. The reply is given up at the closing bound (2 s), and the
    /// process exits. Both socket buffers are made small, so that the list
    /// (about 300 KB) cannot fit in them.
    @Test func clientThatNeverReadsCannotHoldAReply() throws {
        var lines = ""
        for index in 0..<20_000 { lines += "service\(index) tcpmux\n" }
        let config = try ConfigurationFile(lines)
        let small: Int32 = 16 << 10
        let connection = try Connection(config.arguments, prepare: { accepted in
            var size = small
            setsockopt(accepted, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        })
        var size = small
        setsockopt(connection.client, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        try connection.send("HELP\r\n")
        let started = now()
        let status = connection.server.wait(timeout: 20)
        #expect(status == 0, "the server still waited for the client to read after \(now() - started) s")
    }
}

@Suite struct DrainTests {
    /// The drain after a refusal is bounded in bytes (1 MiB), not only in time
    /// (2 s): a client that keeps sending cannot make the process read all it
    /// can push in those 2 s (some 1.6 GiB on loopback). Both socket buffers are
    /// made small, so what the server accepted before it exited is 1 MiB plus
    /// little; without the byte bound it keeps reading for 2 s.
    @Test func drainBoundedInBytes() throws {
        let small: Int32 = 64 << 10
        let connection = try Connection(prepare: { accepted in
            var size = small
            setsockopt(accepted, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        })
        var size = small
        setsockopt(connection.client, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(connection.client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try connection.send("nosuch\r\n")
        #expect(connection.receive(atLeast: unknown.utf8.count) == Array(unknown.utf8))
        // Send until the server is gone (the send fails), for at most 10 s.
        let chunk = pseudoRandomBytes(64 << 10)
        var accepted = 0
        let started = now()
        var failure: Int32 = 0
        while failure == 0 && now() - started < 10 {
            let count = chunk.withUnsafeBytes { Glibc.send(connection.client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count > 0 { accepted += count } else if errno != EAGAIN && errno != EINTR { failure = errno }
        }
        let elapsed = now() - started
        #expect(failure == ECONNRESET || failure == EPIPE, "the server went away while we sent: \(failure), after \(elapsed) s")
        #expect(accepted > 1 << 20, "it drained its 1 MiB first: \(accepted) bytes")
        #expect(accepted < 4 << 20, "it stopped reading after 1 MiB: \(accepted) bytes accepted in \(elapsed) s")
        #expect(connection.server.wait() == 0)
    }
}

@Suite struct DeadlineTests {
    /// A client that sends nothing gets a `-` line at the deadline (-t), then a close.
    @Test func idleClientClosedAtDeadline() throws {
        let connection = try Connection(["-t", "1"])
        let reply = connection.replyText(timeout: 10)
        let elapsed = now() - connection.started
        #expect(reply == "-Timed out waiting for the request\r\n")
        // Generous above for a busy machine; a missing deadline never closes it.
        #expect(elapsed >= 1.0 && elapsed < 6.0, "closed at the 1 s deadline, took \(elapsed) s")
        #expect(connection.finish() == 0)
    }

    /// The deadline is total, not per read: a byte every 0.2 s cannot extend it
    /// (FreeBSD re-arms alarm(10) on every read).
    @Test func slowDripClosedAtTotalDeadline() throws {
        let connection = try Connection(["-t", "2"])
        var replyReady = false
        while !replyReady && now() - connection.started < 10 {
            try? connection.send("a")
            var entry = pollfd(fd: connection.client, events: Int16(POLLIN), revents: 0)
            replyReady = poll(&entry, 1, 200) > 0
        }
        let reply = connection.replyText(timeout: 10)
        let elapsed = now() - connection.started
        #expect(reply == "-Timed out waiting for the request\r\n")
        // Generous above for a busy machine; a re-armed deadline closes it only
        // 2 s after the drip stops at 10 s.
        #expect(elapsed >= 2.0 && elapsed < 8.0, "closed at the 2 s deadline, took \(elapsed) s")
        #expect(connection.finish() == 0)
    }

    /// Nested requests share the one deadline: a client that sends a nested
    /// `tcpmux` every 0.6 s under `-t 1` is refused at about 1 s from connecting,
    /// not kept alive by a fresh deadline for each request.
    @Test func nestedRequestsShareTheDeadline() throws {
        let connection = try Connection(["-t", "1"])
        var received: [UInt8] = []
        var timedOutAfter: Double?
        var sent = 0
        // Up to 8.4 s of requests (14, under the nesting bound of 16): with a
        // fresh deadline each, none of them would ever time out.
        sending: while sent < 14 {
            try? connection.send("tcpmux\r\n")
            sent += 1
            let next = now() + 0.6
            while now() < next {
                var entry = pollfd(fd: connection.client, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, Int32((next - now()) * 1000) + 1) > 0 else { continue }
                var buffer = [UInt8](repeating: 0, count: 4096)
                let count = buffer.withUnsafeMutableBytes { recv(connection.client, $0.baseAddress, $0.count, 0) }
                if count <= 0 { break sending }
                received += buffer[..<count]
                if String(decoding: received, as: UTF8.self).hasSuffix(timedOut) {
                    timedOutAfter = now() - connection.started
                    break sending
                }
            }
        }
        let text = String(decoding: received, as: UTF8.self)
        let accepted = text.components(separatedBy: "+OK\r\n").count - 1
        #expect(text == String(repeating: "+OK\r\n", count: accepted) + timedOut)
        #expect((1...4).contains(accepted), "requests before the deadline: \(accepted) of \(sent)")
        // Generous above (a busy machine), far below the 8.4 s a fresh deadline
        // per request would keep the connection for.
        let elapsed = try #require(timedOutAfter, "no timeout while requests kept coming: \(text.debugDescription)")
        #expect(elapsed >= 1.0 && elapsed < 6.0, "refused at the 1 s deadline, took \(elapsed) s")
        #expect(connection.finish() == 0)
    }
}

@Suite struct ClientBehaviourTests {
    /// A client that half-closes after its request still gets the whole reply.
    @Test func halfClosedClient() throws {
        let connection = try Connection()
        try connection.send("tcpmux\r\nhelp\r\n")
        connection.shutdownWrite()
        #expect(connection.replyText() == "+OK\r\ntcpmux\r\n")
        #expect(connection.finish() == 0)
    }

    /// A reset mid-line: nobody to answer; the process exits 0 at once, no crash.
    @Test func resetMidLine() throws {
        let connection = try Connection(["-t", "30"])
        try connection.send("tcp")
        usleep(100_000)
        connection.reset()
        #expect(connection.server.wait(timeout: 10) == 0)
        #expect(now() - connection.started < 10, "did not wait for the deadline")
    }

    /// A client that vanishes before reading its replies: writes fail with EPIPE
    /// or ECONNRESET, never a SIGPIPE death.
    @Test func clientGoneBeforeReply() throws {
        let connection = try Connection()
        try connection.send(String(repeating: "tcpmux\r\n", count: 16) + "HELP\r\n")
        connection.reset()
        #expect(connection.server.wait(timeout: 10) == 0)
    }

    /// 100 connections at once, each its own process, each answered exactly.
    @Test func hundredConcurrentConnections() throws {
        let connections = try (0..<100).map { _ in try Connection() }
        for connection in connections {
            try connection.send("tcpmux\r\nHELP\r\n")
        }
        for connection in connections {
            #expect(connection.replyText() == "+OK\r\ntcpmux\r\n")
        }
        for connection in connections {
            #expect(connection.finish() == 0)
        }
    }
}

/// Runs the binary with pipes on fd 0, 1 and 2, as from a shell. With
/// `closeOutputsFirst`, nobody reads stdout and stderr: they are closed before
/// the child can write.
func runWithPipes(_ arguments: [String], input: String, closeOutputsFirst: Bool = false) throws -> (status: Int32, stdout: String, stderr: String) {
    guard closeOutputsFirst else { return try runClient([serverBinary] + arguments, input: input) }
    let pipes = try closeOnExecPipes(3)
    close(pipes[1][0]); close(pipes[2][0])
    let child = try Child([serverBinary] + arguments, stdin: pipes[0][0], stdout: pipes[1][1], stderr: pipes[2][1])
    close(pipes[0][0]); close(pipes[1][1]); close(pipes[2][1])
    _ = Array(input.utf8).withUnsafeBytes { write(pipes[0][1], $0.baseAddress, $0.count) }
    close(pipes[0][1])
    return (child.wait(), "", "")
}

@Suite struct CommandLineTests {
    /// From a shell, fd 0 and 1 are pipes: the same protocol, nothing on stderr.
    @Test func pipes() throws {
        let run = try runWithPipes([], input: "tcpmux\r\nHELP\r\n")
        #expect(run.status == 0)
        #expect(run.stdout == "+OK\r\ntcpmux\r\n")
        #expect(run.stderr == "")
    }

    /// -d copies the connection's log line to stderr, request escaped.
    @Test func debugLogLine() throws {
        let run = try runWithPipes(["-d"], input: "tcpmux\r\nbad\u{1}name\r\n")
        #expect(run.stdout == "+OK\r\n-Service name contains a control character\r\n")
        #expect(run.stderr.contains("peer (not a socket): \"tcpmux\" accepted tcpmux, nested TCPMUX; \"bad\\x01\" rejected: Service name contains a control character"),
                "stderr was: \(run.stderr)")
    }

    @Test(arguments: [["-x"], ["-t", "0"], ["-t"], ["extra"]])
    func badArgumentExits64(_ arguments: [String]) throws {
        let run = try runWithPipes(arguments, input: "HELP\r\n")
        #expect(run.status == 64)
        #expect(run.stdout == "")
        #expect(run.stderr.hasSuffix("usage: in.tcpmuxd [-dhnV] [-f file] [-t seconds] [-u user]\n"))
    }

    /// Under a superserver fd 2 is the client's socket: a bad command line is
    /// logged, and the client gets one `-` line, never the usage text.
    @Test(arguments: [["-x"], ["-t", "0"]])
    func badArgumentUnderSuperserver(_ arguments: [String]) throws {
        let connection = try Connection(arguments)
        try connection.send("HELP\r\n")
        let (bytes, end) = connection.receiveAll(timeout: 10)
        #expect(String(decoding: bytes, as: UTF8.self) == "-Service table unavailable\r\n")
        #expect(end == .endOfStream)
        #expect(connection.finish() == 64)
    }

    @Test func helpAndVersion() throws {
        let help = try runWithPipes(["-h"], input: "")
        #expect(help.status == 0 && help.stderr == "")
        #expect(help.stdout == "usage: in.tcpmuxd [-dhnV] [-f file] [-t seconds] [-u user]\n")
        let version = try runWithPipes(["-V"], input: "")
        #expect(version.status == 0 && version.stderr == "")
        #expect(version.stdout.hasPrefix("in.tcpmuxd "))
    }

    /// Whoever reads our output may be gone before we write: EPIPE, not death by
    /// SIGPIPE, for a reply and for a usage message alike.
    @Test(arguments: [[], ["-x"], ["-h"]])
    func readerGone(_ arguments: [String]) throws {
        let run = try runWithPipes(arguments, input: "tcpmux\r\nHELP\r\n", closeOutputsFirst: true)
        #expect(run.status == (arguments == ["-x"] ? 64 : 0))
    }
}
