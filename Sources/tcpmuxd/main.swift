// in.tcpmuxd: one TCPMUX connection (RFC 1078), as inetd hands it over: requests
// on fd 0, replies on fd 1. Read top to bottom, these are the phases of that
// connection.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import TCPMUXProtocol
import TCPMUXServices

let requestInput: Int32 = 0
let replyOutput: Int32 = 1
/// How long closing may take: writing the last reply, then draining the client.
let closingSeconds = 2
/// The most we drain from a client after our last reply.
let drainLimit = 1 << 20
let version = "in.tcpmuxd 0.2.0"

func printText(_ text: String, to fd: Int32) {
    try? writeAll(Array(text.utf8), to: fd, before: .after(seconds: closingSeconds))
}

/// The connection's one syslog line, built as it goes: who, then each event.
struct Transcript {
    private let connection: String
    private var events: [String] = []

    init(client: SocketAddress?, local: SocketAddress?) {
        if let client, let local { connection = "peer \(client) on \(local)" }
        else { connection = "peer (not a socket)" }
    }

    mutating func append(_ event: String) { events.append(event) }

    /// Logs the events so far, as one line, and starts the next line afresh (a
    /// forward logs when it starts and again when it ends).
    mutating func log() {
        defer { events.removeAll() }
        // Appended by hand: the generic joined(separator:) looks up its types at
        // run time, some 80,000 instructions, more than the rest of the request.
        var line = connection + ": "
        for (index, event) in events.enumerated() {
            if index > 0 { line += "; " }
            line += event
        }
        SystemLog.info(line)
    }

    /// Writes a reply to the client; a failure is noted, for the log.
    mutating func send(_ reply: Reply) -> Bool {
        do throws(Errno) {
            try writeAll(reply.bytes, to: replyOutput, before: .after(seconds: closingSeconds))
            return true
        } catch {
            append("reply lost: \(error)")
            return false
        }
    }
}

// 1. Arguments. A mistake here is the administrator's, made at a terminal or in
//    inetd.conf: say so on stderr and exit EX_USAGE. Whoever reads our output
//    may be gone: a write then fails with EPIPE instead of killing us.
ignoreBrokenPipes()
let options: Options
do {
    options = try Options(arguments: commandLineArguments())
} catch {
    printText("in.tcpmuxd: \(error)\n\(Options.usage)\n", to: 2)
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

// 2. The service table, before a byte from the client: the file, or the built-in
//    table when there is no file. `-n` prints it and stops here.
let loaded = loadServiceTable(options)
if options.action == .checkConfiguration {
    switch loaded {
    case .success(let (table, source)):
        printText("# \(source)\n" + Configuration.normalized(table), to: 1)
        exit(0)
    case .failure(let error as InvalidConfiguration):
        // A loop, not map with a closure: a closure in top-level code is
        // MainActor-isolated and checked at run time, and that check alone links
        // the concurrency runtime and libdispatch, whose start-up every
        // connection would pay.
        var lines = ""
        for problem in error.errors { lines += "\(problem)\n" }
        printText(lines, to: 2)
        exit(1)
    case .failure(let error):
        printText("in.tcpmuxd: \(error)\n", to: 2)
        exit(1)
    }
}

// 3. From here on fd 2 may be the client's socket: diagnostics go to syslog only.
SystemLog.open(copyToStandardError: options.debug)
if case .failure(let error) = loaded {
    // Fail closed: every request of this connection gets a `-` line.
    SystemLog.error("service table unavailable: \(error)")
}

// 4. Give up what the table does not need, before the first byte is read: a
//    root server becomes the unprivileged user (-u, default nobody) for good,
//    or, when an exec service runs as another user, lowers its effective ids to
//    it until the request is decided. A server that cannot do this serves
//    nothing: it exits before reading a byte.
let coreLimit = disableCoreDumps()
var table = try? loaded.get().table
var privileges: PrivilegeState
do throws(PrivilegeFailure) {
    let runningAsRoot = geteuid() == 0
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

// 5. The requests. One total deadline covers every request of the connection,
//    nested ones included: a client dripping a byte a second cannot extend it.
let deadline = Deadline.after(seconds: options.timeoutSeconds)
var selected: Service?
conversation: while true {
    var parser = RequestParser()
    var outcome: RequestParser.Outcome?
    while outcome == nil {
        switch readByte(from: requestInput, before: deadline) {
        case .byte(let byte):
            outcome = parser.consume(byte)
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
    // Decided: root, if kept for an exec switch, is given up for good before
    // anything but that exec, the reply included.
    settleDecided(&privileges, after: decision.next)
    let shown = if case .request(let name) = outcome! { name.bytes } else { parser.received }
    transcript.append("\"\(escapedForLog(shown))\" \(decision.summary)")
    if let reply = decision.reply, !transcript.send(reply) {
        settleDecided(&privileges, after: .close)
        break conversation
    }
    switch decision.next {
    case .readRequest: continue conversation
    case .close: break conversation
    case .handOff(let service):
        selected = service
        break conversation
    }
}

// 6. The hand-off, prepared in full before the `+`: a program that cannot run or
//    a backend that does not answer gets a `-` line instead.
if let service = selected {
    switch service.handOff {
    case .exec(let program):
        do throws(HandOffFailure) {
            try prepareExec(program, privileges: &privileges)
            if let acceptance = service.acceptance, !transcript.send(acceptance) { break }
            transcript.append("exec \(program.path) as \(program.credentials?.user ?? "self")")
            transcript.log()
            let environment = serviceEnvironment(service: service.name.description, client: client, local: local)
            let error = execProgram(program, environment: environment, input: requestInput, output: replyOutput, coreLimit: coreLimit)
            SystemLog.error("exec \(program.path) after +: \(error)")
            exit(1)
        } catch {
            transcript.append("exec failed: \(error)")
            _ = transcript.send(.negative(.handOffFailed))
        }
    case .forward(let target):
        // Root, if the server had it, was given up when the request was decided.
        do throws(HandOffFailure) {
            let backend = try connectBackend(for: service, target, client: client, local: local,
                                             before: .after(seconds: connectSeconds), transcript: &transcript)
            if let acceptance = service.acceptance, !transcript.send(acceptance) { break }
            // Logged now, so that a long relay, or one that is killed, leaves a record.
            transcript.append("forward \(target)")
            transcript.log()
            let started = Deadline.now
            let (up, down) = relay(input: requestInput, output: replyOutput, backend: backend)
            transcript.append("forward \(target) ended: \(up) bytes up, \(down) bytes down, \(started.elapsedMilliseconds) ms")
            transcript.log()
            exit(0)
        } catch {
            transcript.append("forward failed: \(error)")
            _ = transcript.send(.negative(.handOffFailed))
        }
    case .tcpmux:
        break  // Answered in the conversation: TCPMUX again.
    }
}

// 7. Log the connection, then close without losing the last reply, and exit.
transcript.log()
closeConnection(input: requestInput, output: replyOutput,
                drainUntil: .after(seconds: closingSeconds), limit: drainLimit)
exit(0)
