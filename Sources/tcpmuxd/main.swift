// in.tcpmuxd: one TCPMUX connection (RFC 1078), as inetd hands it over: requests
// on fd 0, replies on fd 1. Read top to bottom, serveConnection is the phases of
// that connection; the core (Session) decides every answer, and this file only
// carries the decisions out.
import CSystem
import TCPMUXProtocol
import TCPMUXServices

let requestInput: Int32 = 0
let replyOutput: Int32 = 1
/// How long closing may take: writing the last reply, then draining the client.
let closingSeconds = 2
/// The most we drain from a client after our last reply.
let drainLimit = 1 << 20
let version = "in.tcpmuxd 0.3.0"

/// Text for the person at the terminal (usage, version, `-n`).
func printText(_ text: String, to fd: Int32) {
    try? writeAll(Array(text.utf8), to: fd, before: .after(seconds: closingSeconds))
}

/// Writes a reply to the client; a failure is noted for the log.
func send(_ reply: Reply, transcript: inout Transcript) -> Bool {
    do throws(Errno) {
        try writeAll(reply.bytes, to: replyOutput, before: .after(seconds: closingSeconds))
        return true
    } catch {
        transcript.append("reply lost: \(error)")
        return false
    }
}

/// The connection, phase by phase. A function rather than top-level code: its
/// variables are then the connection's own, not global state (which Embedded
/// Swift's strict concurrency would refuse).
func serveConnection() -> Never {
    // 1. Arguments. A mistake here is the administrator's, made at a terminal or
    //    in inetd.conf: say so and exit EX_USAGE. At a terminal, on stderr. Under
    //    a superserver, where fd 2 is the client's socket, in the log, and the
    //    client gets the `-` line of a server without a table. Whoever reads our
    //    output may be gone: a write then fails with EPIPE instead of killing us.
    ignoreBrokenPipes()
    let options: Options
    do throws(Options.UsageError) {
        options = try Options(arguments: commandLineArguments())
    } catch {
        guard isSocket(2) else {
            printText("in.tcpmuxd: \(error)\n\(Options.usage)\n", to: 2)
            exit(64)
        }
        SystemLog.open(copyToStandardError: false)
        SystemLog.error("bad command line: \(error); every connection refused")
        if let reply = Session(table: nil).refuse(.tableUnavailable).reply {
            try? writeAll(reply.bytes, to: replyOutput, before: .after(seconds: closingSeconds))
        }
        halfClose(replyOutput)
        drain(requestInput, until: .after(seconds: closingSeconds), limit: drainLimit)
        exit(64)
    }
    switch options.action {
    case .printUsage:
        printText("\(Options.usage)\n", to: 1)
        exit(0)
    case .printVersion:
        printText("\(version)\n", to: 1)
        exit(0)
    case .checkConfiguration, .serve:
        break
    }

    // 2. The service table, before a byte from the client: the file, or the
    //    built-in table when there is no file. `-n` prints it and stops here.
    let runningAsRoot = geteuid() == 0
    let loaded = Result { () throws(TableLoadError) in try loadServiceTable(options, runningAsRoot: runningAsRoot) }
    if options.action == .checkConfiguration {
        switch loaded {
        case .success(let (table, source)):
            printText("# \(source)\n" + Configuration.normalized(table), to: 1)
            exit(0)
        case .failure(.invalid(let invalid)):
            var lines = ""
            for problem in invalid.errors { lines += "\(problem)\n" }
            printText(lines, to: 2)
            exit(1)
        case .failure(let error):
            printText("in.tcpmuxd: \(error)\n", to: 2)
            exit(1)
        }
    }

    // 3. From here on fd 2 may be the client's socket: diagnostics go to syslog
    //    only. A table that could not be loaded fails closed: every request of
    //    this connection gets a `-` line.
    SystemLog.open(copyToStandardError: options.debug)
    var table: ServiceTable?
    switch loaded {
    case .success(let (loadedTable, _)): table = loadedTable
    case .failure(let error): SystemLog.error("service table unavailable: \(error)")
    }

    // 4. Give up what the table does not need, before the first byte is read: a
    //    root server becomes the unprivileged user (-u, default nobody) for good,
    //    or, when an exec service runs as another user, lowers its effective ids
    //    to it until the request is decided. A server that cannot do this serves
    //    nothing: it exits before reading a byte.
    let coreLimit = disableCoreDumps()
    var privileges: PrivilegeState
    do throws(PrivilegeFailure) {
        let unprivileged = runningAsRoot ? unprivilegedCredentials(options, table: &table) : overflowCredentials
        privileges = try apply(PrivilegePlan.plan(runningAsRoot: runningAsRoot, table: table, unprivileged: unprivileged))
    } catch {
        SystemLog.error("cannot give up privileges: \(error); exiting before the request is read")
        exit(1)
    }
    let client = socketAddress(of: requestInput, peer: true)
    let local = socketAddress(of: requestInput, peer: false)
    var session = Session(table: table, endpoints: Endpoints(client: client?.address, local: local?.address))
    var transcript = Transcript(client: client, local: local)

    // 5. The requests. One total deadline covers every request of the
    //    connection, nested ones included: a client dripping a byte a second
    //    cannot extend it. Once a request is decided, root (if kept for an exec
    //    switch) is given up for good before anything but that exec.
    let deadline = Deadline.after(seconds: options.timeoutSeconds)
    var next = Session.Next.close
    var input = RequestInput(requestInput)
    conversation: while true {
        var parser = RequestParser()
        var outcome: RequestParser.Outcome?
        while outcome == nil {
            switch input.next(before: deadline) {
            case .bytes(let bytes):
                // Only what the parser consumed leaves the socket.
                let consumed: Int
                (outcome, consumed) = parser.consume(bytes)
                input.take(consumed)
            case .endOfInput:
                outcome = .rejected(parser.endOfInput())
            case .timedOut:
                outcome = .rejected(.timedOut)
            case .failed(let error):
                // Reset or gone: nobody is left to answer.
                transcript.append("\"\(escapedForLog(parser.received))\" client lost: \(error)")
                settleDecided(&privileges, after: .close)
                break conversation
            }
        }
        let decision = session.decide(outcome!)
        settleDecided(&privileges, after: decision.next)
        let shown = if case .request(let name) = outcome! { name.bytes } else { parser.received }
        transcript.append("\"\(escapedForLog(shown))\" \(decision.summary)")
        if let reply = decision.reply, !send(reply, transcript: &transcript) {
            settleDecided(&privileges, after: .close)
            break conversation
        }
        if case .readRequest = decision.next { continue conversation }
        next = decision.next
        break conversation
    }

    // 6. The hand-off, prepared in full before the `+`: a program that cannot
    //    run or a backend that does not answer gets the session's `-` line.
    switch next {
    case .readRequest, .close:
        break
    case .exec(let program, let acceptance, let service):
        execHandOff(program, acceptance: acceptance, service: service.name, privileges: &privileges,
                    transcript: &transcript, client: client, local: local, coreLimit: coreLimit)
    case .forward(let target, let acceptance, let service):
        forwardHandOff(target, acceptance: acceptance, service: service, transcript: &transcript, client: client, local: local)
    }

    // 7. Half-close first, so that the client has its answer without waiting for
    //    the log (syslog(3) reads the time zone and connects to /dev/log: a
    //    twentieth of a HELP, bench/run); then log the connection, drain the
    //    client without losing the last reply, and exit.
    halfClose(replyOutput)
    transcript.log()
    drain(requestInput, until: .after(seconds: closingSeconds), limit: drainLimit)
    exit(0)
}

serveConnection()
