// The connection's syslog line, built as the connection goes.

/// Who the connection is with, then each event (request, decision, hand-off),
/// logged as one line. A forward logs when the relay starts and again when it
/// ends, so that a long or killed relay leaves a record.
struct Transcript {
    private let connection: String
    private var events: [String] = []

    init(client: SocketAddress?, local: SocketAddress?) {
        if let client, let local { connection = "peer \(client) on \(local)" }
        else { connection = "peer (not a socket)" }
    }

    mutating func append(_ event: String) { events.append(event) }

    /// Logs the events so far, as one line, and starts the next line afresh.
    mutating func log() {
        defer { events.removeAll() }
        // Appended by hand: the generic joined(separator:) looks up its types at
        // run time in the full runtime, more than the rest of the request costs.
        var line = connection + ": "
        for (index, event) in events.enumerated() {
            if index > 0 { line += "; " }
            line += event
        }
        SystemLog.info(line)
    }
}
