import Testing
import TCPMUXProtocol
@testable import TCPMUXServices

func name(_ text: String) -> ServiceName { ServiceName(text)! }

@Suite struct ServiceTableTests {
    @Test func builtInIsTheSeeds() {
        #expect(ServiceTable.builtIn.services == [Service(name: name("tcpmux"), handOff: .tcpmux, acknowledgement: .server("OK"))])
    }

    @Test(arguments: ["tcpmux", "TCPMUX", "TcpMux"])
    func lookupIgnoresCase(_ text: String) {
        #expect(ServiceTable.builtIn.service(named: name(text))?.name.description == "tcpmux")
    }

    @Test func unknownName() {
        #expect(ServiceTable.builtIn.service(named: name("tcpmux2")) == nil)
        #expect(ServiceTable.builtIn.service(named: name("tcpmu")) == nil)
    }

    /// Names collide case-insensitively, and HELP is the protocol's own.
    @Test func invalidTables() {
        #expect(throws: ServiceTable.Error.duplicateName(name("Echo"))) {
            try ServiceTable([Service(name: name("echo"), handOff: .tcpmux), Service(name: name("Echo"), handOff: .tcpmux)])
        }
        #expect(throws: ServiceTable.Error.reservedName(name("help"))) {
            try ServiceTable([Service(name: name("help"), handOff: .tcpmux)])
        }
    }
}

@Suite struct SessionTests {
    @Test(arguments: ["HELP", "help", "HeLp"])
    func helpListsTheServicesAndCloses(_ text: String) {
        var session = Session(table: .builtIn)
        let decision = session.decide(.request(name(text)))
        #expect(decision.reply == .serviceList([name("tcpmux")]))
        #expect(decision.reply?.bytes == Array("tcpmux\r\n".utf8), "no status line for HELP (RFC 1078)")
        #expect(decision.next == .close)
    }

    @Test func tcpmuxNestsThenHelp() {
        var session = Session(table: .builtIn)
        #expect(session.decide(.request(name("tcpmux"))) ==
                Session.Decision(reply: .positive("OK"), next: .readRequest, summary: "accepted tcpmux, nested TCPMUX"))
        #expect(session.decide(.request(name("TCPMUX"))).next == .readRequest)
        #expect(session.nesting == 2)
        #expect(session.decide(.request(.help)).reply == .serviceList([name("tcpmux")]))
    }

    /// Nesting is bounded: the request past the bound is refused and the connection closes.
    @Test func nestingIsBounded() {
        var session = Session(table: .builtIn)
        for _ in 0..<Session.maximumNesting {
            #expect(session.decide(.request(name("tcpmux"))).reply == .positive("OK"))
        }
        let refused = session.decide(.request(name("tcpmux")))
        #expect(refused.reply == .negative(.nestingTooDeep))
        #expect(refused.next == .close)
    }

    @Test func unknownServiceIsRefused() {
        var session = Session(table: .builtIn)
        let decision = session.decide(.request(name("finger")))
        #expect(decision.reply?.bytes == Array("-Service not available\r\n".utf8))
        #expect(decision.next == .close)
    }

    @Test(arguments: Rejection.allCases)
    func everyRejectionCloses(_ rejection: Rejection) {
        var session = Session(table: .builtIn)
        let decision = session.decide(.rejected(rejection))
        #expect(decision.reply == .negative(rejection))
        #expect(decision.next == .close)
    }
}

@Suite struct OptionsTests {
    @Test func defaults() throws {
        let options = try Options(arguments: [])
        #expect(options == Options())
        #expect(options.action == .serve && options.timeoutSeconds == 10 && !options.debug)
    }

    @Test(arguments: [["-t", "5"], ["-t5"], ["-dt", "5"], ["-d", "-t5"], ["-t", "5", "-d"], ["-dt5", "--"]])
    func timeoutForms(_ arguments: [String]) throws {
        let options = try Options(arguments: arguments)
        #expect(options.timeoutSeconds == 5)
        #expect(options.debug == arguments.joined().contains("d"))
    }

    @Test func actions() throws {
        #expect(try Options(arguments: ["-h"]).action == .printUsage)
        #expect(try Options(arguments: ["-V"]).action == .printVersion)
    }

    @Test(arguments: [
        (["-x"], "unknown option -x"),
        (["-t"], "option -t needs a value"),
        (["-t", "0"], "-t 0: not a whole number of seconds from 1 to 3600"),
        (["-t", "3601"], "-t 3601: not a whole number of seconds from 1 to 3600"),
        (["-t", "1.5"], "-t 1.5: not a whole number of seconds from 1 to 3600"),
        (["-t", "ten"], "-t ten: not a whole number of seconds from 1 to 3600"),
        (["-t", "+5"], "-t +5: not a whole number of seconds from 1 to 3600"),
        (["-f"], "option -f needs a value"),
        (["-f", ""], "option -f needs a value"),
        (["extra"], "unexpected argument extra"),
        (["-d", "--", "-t"], "unexpected argument -t"),
    ])
    func usageErrors(_ arguments: [String], _ message: String) {
        #expect(throws: Options.UsageError(description: message)) { try Options(arguments: arguments) }
    }
}

@Suite struct PrivilegePlanTests {
    let nobody = Credentials(user: "nobody", uid: 65534, gid: 65534, groups: [65534])

    func table(_ text: String) -> ServiceTable {
        try! Configuration.parse(text, file: "t", context: context())
    }

    @Test func notRootKeepsWhatItHas() {
        #expect(PrivilegePlan.plan(runningAsRoot: false, table: table("a exec /bin/a"), unprivileged: nobody) == .unchanged)
    }

    /// No exec service, or no table at all: nobody, for good, before any byte is read.
    @Test func noSwitchNeeded() {
        #expect(PrivilegePlan.plan(runningAsRoot: true, table: table("t tcpmux\nf forward 127.0.0.1:80"), unprivileged: nobody) == .become(nobody))
        #expect(PrivilegePlan.plan(runningAsRoot: true, table: nil, unprivileged: nobody) == .become(nobody))
    }

    /// Exec services of one user other than the unprivileged one: lowered, not
    /// that user for good, so that a forward, HELP or a refusal never runs as it
    /// (a forward would connect with its uid and groups).
    @Test func oneExecUser() {
        #expect(PrivilegePlan.plan(runningAsRoot: true, table: table("a user=alice exec /bin/a\nb user=alice exec /bin/b\nf forward /run/f.sock"), unprivileged: nobody) == .lowerUntilDecided(nobody))
    }

    /// Every exec service runs as the unprivileged user: nothing needs root, so
    /// it is given up at once.
    @Test func execAsTheUnprivilegedUser() {
        #expect(PrivilegePlan.plan(runningAsRoot: true, table: table("a user=nobody exec /bin/a\nf forward /run/f.sock"), unprivileged: nobody) == .become(nobody))
    }

    /// Several users, or root itself: lowered until the request is decided.
    @Test func severalExecUsers() {
        #expect(PrivilegePlan.plan(runningAsRoot: true, table: table("a user=alice exec /bin/a\nb exec /bin/b"), unprivileged: nobody) == .lowerUntilDecided(nobody))
        #expect(PrivilegePlan.plan(runningAsRoot: true, table: table("r user=root exec /bin/r"), unprivileged: nobody) == .lowerUntilDecided(nobody))
    }

    /// The state the plan leaves is the value carried to the hand-off.
    @Test func planState() {
        #expect(PrivilegePlan.unchanged.state == .notRoot)
        #expect(PrivilegePlan.become(nobody).state == .settled(nobody))
        #expect(PrivilegePlan.lowerUntilDecided(nobody).state == .lowered(nobody))
        #expect(PrivilegeState.lowered(nobody).holdsRoot)
        #expect(!PrivilegeState.settled(nobody).holdsRoot && !PrivilegeState.notRoot.holdsRoot)
    }

    /// A lowered server gives root up, as the unprivileged user, on every
    /// decision but an exec hand-off and the next nested request: a forward,
    /// HELP, a refusal, a timeout.
    @Test func loweredSettlesOnDecision() throws {
        let services = table("a user=alice exec /bin/a\nf forward /run/f.sock\nt tcpmux")
        var decider = Session(table: services)
        let exec = decider.decide(.request(name("a"))).next
        let forward = decider.decide(.request(name("f"))).next
        let lowered = PrivilegeState.lowered(nobody)
        #expect(lowered.settling(after: forward) == nobody)
        #expect(lowered.settling(after: .close) == nobody)
        #expect(lowered.settling(after: exec) == nil, "the exec switches to its own user")
        #expect(lowered.settling(after: .readRequest) == nil, "a nested request may still select the exec")
        var session = Session(table: services)
        for request in ["HELP", "nosuch"] {
            #expect(lowered.settling(after: session.decide(.request(name(request))).next) == nobody)
        }
        #expect(lowered.settling(after: session.decide(.rejected(.timedOut)).next) == nobody)
        #expect(lowered.refusalIdentity == nobody)
        #expect(PrivilegeState.settled(nobody).settling(after: .close) == nil && PrivilegeState.settled(nobody).refusalIdentity == nil)
        #expect(PrivilegeState.notRoot.settling(after: forward) == nil)
    }
}
