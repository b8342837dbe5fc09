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
let version = "in.tcpmuxd 0.1.0"

// 1. Arguments. A mistake here is the administrator's, made at a terminal or in
//    inetd.conf: say so on stderr and exit EX_USAGE.
let options: Options
do {
    options = try Options(arguments: Array(CommandLine.arguments.dropFirst()))
} catch {
    _ = writeAll(Array("in.tcpmuxd: \(error)\n\(Options.usage)\n".utf8), to: 2, before: .after(seconds: closingSeconds))
    exit(64)
}
switch options.action {
case .printUsage:
    _ = writeAll(Array("\(Options.usage)\n".utf8), to: 1, before: .after(seconds: closingSeconds))
    exit(0)
case .printVersion:
    _ = writeAll(Array("\(version)\n".utf8), to: 1, before: .after(seconds: closingSeconds))
    exit(0)
case .serve:
    break
}

// 2. From here on fd 2 may be the client's socket: diagnostics go to syslog only,
//    and a vanished client is an EPIPE to handle, not a signal to die of.
ignoreBrokenPipes()
SystemLog.open(copyToStandardError: options.debug)
let peer = peerAddress(of: requestInput)

// 3. The requests. One total deadline covers every request of the connection,
//    nested ones included: a client dripping a byte a second cannot extend it.
let deadline = Deadline.after(seconds: options.timeoutSeconds)
var session = Session(table: .builtIn)
var transcript: [String] = []
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
            break conversation
        }
    }
    let decision = session.decide(outcome!)
    let request: String
    if case .request(let name) = outcome! { request = "\"\(escapedForLog(name.bytes))\"" }
    else { request = "\"\(escapedForLog(parser.received))\"" }
    transcript.append("\(request) \(decision.summary)")

    if case .failure(let error) = writeAll(decision.reply.bytes, to: replyOutput, before: .after(seconds: closingSeconds)) {
        transcript.append("reply lost: \(error)")
        break conversation
    }
    if decision.next == .close { break conversation }
}

// 4. Close without losing the last reply, log the connection, exit.
closeConnection(input: requestInput, output: replyOutput,
                drainUntil: .after(seconds: closingSeconds), limit: drainLimit)
SystemLog.info("peer \(peer): \(transcript.joined(separator: "; "))")
exit(0)
