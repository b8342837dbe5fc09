// in.tcpmuxd under the real superservers, from the shipped examples, talked to by
// real clients: our own socket, `nc -N` and a scripted telnet session. One
// superserver at a time: openbsd-inetd writes /run/inetd.pid.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// HELP as a loopback client sees it under the shipped tcpmuxd.conf.example.
let shippedHelp = "tcpmux\r\necho\r\nweb\r\n"

/// What telnet shows of a reply: each CRLF a line feed.
func shownByTelnet(_ reply: String) -> String { reply.replacingOccurrences(of: "\r\n", with: "\n") }

/// Every byte value, a few times over: what an exec or forward hand-off must
/// pass through untouched.
let everyByte: [UInt8] = Array(repeating: Array(0...255), count: 16).flatMap { $0 }

enum Scenario: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case help
    case nestedTCPMUX
    case reject
    case execHandOff
    case forwardHandOff
    case diagnosticsStayOffTheWire
    case concurrentConnections

    var testDescription: String { rawValue }

    func run(through superserver: Superserver) throws {
        let backend = try Backend(serve: Backend.echo)
        // A port nothing listens on, held for the test: the forward service fails.
        let dead = try boundSocket()
        defer { close(dead) }
        let forwardPort = self == .diagnosticsStayOffTheWire ? try localPort(of: dead) : backend.port
        let deployment = try Deployment(superserver, forwardPort: forwardPort)
        defer { deployment.stop() }
        let port = deployment.port
        switch self {
        case .help: try help(port)
        case .nestedTCPMUX: try nestedTCPMUX(port)
        case .reject: try reject(port)
        case .execHandOff: try handOff("echo", port)
        case .forwardHandOff: try handOff("web", port)
        case .diagnosticsStayOffTheWire: try diagnostics(deployment)
        case .concurrentConnections: try concurrent(port)
        }
        #expect(deployment.isRunning, "\(superserver.rawValue) still serves; its log: \(deployment.log)")
    }

    /// The shipped services, listed without a status line, whatever the case of HELP.
    private func help(_ port: UInt16) throws {
        #expect(try TCPClient.exchange("HELP\r\n", port: port) == shippedHelp)
        #expect(try netcat(port: port, "help\r\n") == shippedHelp)
        #expect(try telnetSession(port: port, lines: ["HeLp"], until: "web\n") == shownByTelnet(shippedHelp))
    }

    /// TCPMUX inside TCPMUX: each `+OK` arrives before the next request is read,
    /// and pipelined requests stay in the socket for the nested TCPMUX (the BSD
    /// inetds read in bulk and swallow them).
    private func nestedTCPMUX(_ port: UInt16) throws {
        let client = try TCPClient(port: port)
        try client.send("tcpmux\r\nTCPMUX\r\nHELP\r\n")
        #expect(client.replyText(timeout: 10) == "+OK\r\n+OK\r\n" + shippedHelp)
        #expect(try netcat(port: port, "tcpmux\r\nhelp\r\n") == "+OK\r\n" + shippedHelp)
        #expect(try telnetSession(port: port, lines: ["tcpmux", "tcpmux", "HELP"], until: "web\n")
                == shownByTelnet("+OK\r\n+OK\r\n" + shippedHelp))
    }

    private func reject(_ port: UInt16) throws {
        #expect(try TCPClient.exchange("finger\r\n", port: port) == unknown)
        #expect(try TCPClient.exchange("echo\n", port: port) == "-Request line must end with CRLF, not a bare LF (use telnet, nc -C, ncat -C or socat's crlf option)\r\n")
        #expect(try TCPClient.exchange("", port: port) == "-No request received\r\n")
        #expect(try netcat(port: port, "no such\r\n") == "-Service name contains white space\r\n")
        #expect(try telnetSession(port: port, lines: ["tcpmux", "finger"], until: "available\n")
                == shownByTelnet("+OK\r\n" + unknown))
    }

    /// `echo` runs /bin/cat on the connection, `web` relays to our echo server:
    /// after the `+OK`, every byte goes through both ways, the bytes sent right
    /// behind the request included.
    private func handOff(_ service: String, _ port: UInt16) throws {
        let reply = try TCPClient.exchange(Array("\(service)\r\n".utf8) + everyByte, port: port)
        #expect(reply == Array("+OK\r\n".utf8) + everyByte, "\(reply.count) bytes back")
        #expect(try netcat(port: port, "\(service.uppercased())\r\nhello through nc\r\n") == "+OK\r\nhello through nc\r\n")
        #expect(try telnetSession(port: port, lines: [service, "hello through telnet"], until: "hello through telnet\n")
                == "+OK\nhello through telnet\n")
    }

    /// Under inetd and xinetd, fd 2 is the client's socket: what goes wrong is
    /// logged, and the client gets one `-` line and nothing else.
    private func diagnostics(_ deployment: Deployment) throws {
        let port = deployment.port
        let refused = try TCPClient.exchange("web\r\n", port: port)
        #expect(refused == "-Service temporarily unavailable\r\n")
        try check("unlink", unlink(deployment.configurationFile))
        let unavailable = try TCPClient.exchange("HELP\r\n", port: port)
        #expect(unavailable == "-Service table unavailable\r\n")
        #expect(try netcat(port: port, "echo\r\nhello\r\n") == "-Service table unavailable\r\n")
        try writeText("echo exec /no/such/program\nbad keyword=1 tcpmux\n", to: deployment.configurationFile)
        #expect(try TCPClient.exchange("echo\r\n", port: port) == "-Service table unavailable\r\n")
    }

    /// Twenty connections at once, each its own in.tcpmuxd, each answered exactly.
    private func concurrent(_ port: UInt16) throws {
        let clients = try (0..<20).map { _ in try TCPClient(port: port) }
        for client in clients { try client.send("tcpmux\r\nHELP\r\n") }
        for client in clients { #expect(client.replyText(timeout: 10) == "+OK\r\n" + shippedHelp) }
    }
}

@Suite(.serialized) struct SuperserverTests {
    @Suite(needs([.openbsdInetd, .netcat, .telnet],
                 also: (Superserver.otherInetdRunning == nil, "an inetd is running (/run/inetd.pid): a second one would take over its pid file")))
    struct OpenBSDInetd {
        @Test("through openbsd-inetd", arguments: Scenario.allCases)
        func scenario(_ scenario: Scenario) throws {
            if let pid = Superserver.otherInetdRunning {
                Issue.record("an inetd is running (pid \(pid), /run/inetd.pid): not starting another")
                return
            }
            try scenario.run(through: .openbsdInetd)
        }
    }

    @Suite(needs([.xinetd, .netcat, .telnet]))
    struct XInetd {
        @Test("through xinetd", arguments: Scenario.allCases)
        func scenario(_ scenario: Scenario) throws {
            try scenario.run(through: .xinetd)
        }
    }

    @Suite(needs([.socketActivate, .netcat, .telnet]))
    struct SystemdSocketActivation {
        @Test("through systemd-socket-activate", arguments: Scenario.allCases)
        func scenario(_ scenario: Scenario) throws {
            try scenario.run(through: .systemd)
        }

        /// systemd itself reads the unit pair without a complaint (the binary
        /// path adapted, since systemd checks that it exists).
        @Test func unitsVerify() throws {
            let analyze = try #require(["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].first { FileManager.default.isExecutableFile(atPath: $0) },
                                       "systemd-analyze not found: apt-get install systemd")
            var template = Array("/tmp/tcpmuxd-units.XXXXXX".utf8CString)
            let directory = String(cString: try #require(mkdtemp(&template)))
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try writeText(try Example.text(Example.systemdSocket), to: "\(directory)/tcpmux.socket")
            try writeText(try substituting(Example.installedBinary, serverBinary, in: try Example.text(Example.systemdService),
                                           of: Example.systemdService),
                          to: "\(directory)/tcpmux@.service")
            let run = try runClient([analyze, "verify", "--man=no", "\(directory)/tcpmux.socket", "\(directory)/tcpmux@.service"],
                                    input: "", timeout: 30)
            #expect(run.status == 0)
            #expect(run.stdout + run.stderr == "", "systemd-analyze verify complains")
        }
    }
}
