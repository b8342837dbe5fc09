import TCPMUXProtocol

/// A mistake in the configuration file, as `FILE:LINE: message`.
public struct ConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let message: String

    public var description: String { "\(file):\(line): \(message)" }
}

/// Every mistake found in a file: none of it is used.
public struct InvalidConfiguration: Error, Equatable, Sendable, CustomStringConvertible {
    public let errors: [ConfigurationError]
    public var description: String { errors.map { $0.description }.joined(separator: "; ") }
}

/// The configuration file (tcpmuxd.conf(5)): one service per line, in the spirit
/// of inetd.conf. Fields are separated by white space; double quotes group a
/// field that holds spaces (`\"` and `\\` inside them); a field starting with
/// `#` begins a comment.
///
///     # name  [option...]                  hand-off
///     echo    allow=127.0.0.0/8 user=nobody exec /bin/cat cat
///     web     local=10.0.0.1 hidden         forward 127.0.0.1:8080
///     HELP    allow=10.0.0.0/8              # who may ask for HELP; `off` disables it
///
/// Options: `allow=NETWORKS` (client addresses, comma-separated CIDR),
/// `local=NETWORKS` (addresses the connection may arrive on), `hidden` (not in
/// HELP), `message=TEXT` (the text after the server's `+`, default `OK`),
/// `ack=service` (the service writes its own `+`), `user=USER` and
/// `group=GROUP` (exec only), `proxy=v1|v2` (forward only: the PROXY protocol
/// header first). Hand-offs: `tcpmux`, `exec PATH [ARGV0 ARG...]`,
/// `forward HOST:PORT|[V6]:PORT|/SOCKET`.
///
/// Validation is strict and all-or-nothing: any error rejects the whole file.
public enum Configuration {
    /// Where the server runs, which shapes what a valid file means.
    public struct Context {
        /// A root server never runs a service as root by accident: an exec
        /// service without `user=` runs as `nobody` (CVE-2013-4342). A server
        /// that is not root runs every service as itself.
        public var runningAsRoot: Bool
        /// Read only when a file names users or groups, or an exec service needs
        /// the default user.
        public var accounts: () -> Accounts

        public init(runningAsRoot: Bool, accounts: @escaping () -> Accounts) {
            self.runningAsRoot = runningAsRoot
            self.accounts = accounts
        }
    }

    public static let defaultUser = "nobody"
    /// The longest `message=`: `+`, the text and CRLF in 256 bytes, what
    /// sustrik's libmill tcpmux client reads a reply into.
    public static let maximumMessageLength = 253

    public static func parse(_ text: String, file: String, context: Context) throws(InvalidConfiguration) -> ServiceTable {
        try parse(Array(text.utf8), file: file, context: context)
    }

    /// The file as read: bytes, so that text that is not UTF-8 is refused
    /// (with its line) rather than decoded with replacement characters, which
    /// would make `/tmp/caf\xe9` another path.
    public static func parse(_ bytes: [UInt8], file: String, context: Context) throws(InvalidConfiguration) -> ServiceTable {
        var parser = LineParser(file: file, context: context)
        // Lines end at LF; a CR before it is white space to fields(of:).
        var number = 0
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            guard let text = String(validating: line, as: UTF8.self) else {
                parser.errors.append(ConfigurationError(file: file, line: number, message: "not valid UTF-8"))
                continue
            }
            parser.parse(Substring(text), number: number)
        }
        return try parser.table()
    }

    /// The table as a configuration file that parses back to it, ids resolved in
    /// comments: what `in.tcpmuxd -n` prints.
    public static func normalized(_ table: ServiceTable) -> String {
        var lines: [String] = []
        for service in table.services {
            // A name may hold `"` or start with `#`: it is quoted like any field.
            var fields = [quoted(service.name.description)]
            fields += accessFields(service.access)
            if service.hidden { fields.append("hidden") }
            var comment = ""
            switch service.acknowledgement {
            case .service: fields.append("ack=service")
            case .server(let text) where text != "OK": fields.append("message=" + quoted(text))
            case .server: break
            }
            switch service.handOff {
            case .tcpmux:
                fields.append("tcpmux")
            case .exec(let program):
                if let credentials = program.credentials {
                    fields += ["user=\(quoted(credentials.user))", "group=\(credentials.gid)"]
                    comment = "  # uid \(credentials.uid) gid \(credentials.gid) groups \(credentials.groups.map(String.init).joined(separator: ","))"
                }
                fields += ["exec", quoted(program.path)] + program.arguments.map(quoted)
            case .forward(let target):
                if let proxy = service.proxyHeader { fields.append("proxy=\(proxy.rawValue)") }
                fields += ["forward", quoted(target.description)]
            }
            lines.append(fields.joined(separator: " ") + comment)
        }
        if table.help != HelpPolicy() {
            lines.append((["HELP"] + accessFields(table.help.access) + (table.help.enabled ? [] : ["off"])).joined(separator: " "))
        }
        return lines.map { $0 + "\n" }.joined()
    }

    private static func accessFields(_ access: Access) -> [String] {
        var fields: [String] = []
        if !access.clients.isEmpty { fields.append("allow=" + access.clients.map { $0.description }.joined(separator: ",")) }
        if !access.locals.isEmpty { fields.append("local=" + access.locals.map { $0.description }.joined(separator: ",")) }
        return fields
    }

    /// A field as written in the file: quoted when it holds anything but
    /// printable ASCII without quotes, `#` or backslashes.
    static func quoted(_ field: String) -> String {
        let plain = !field.isEmpty && !field.hasPrefix("#") && field.utf8.allSatisfy {
            (0x21...0x7E).contains($0) && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\")
        }
        if plain { return field }
        // Unicode scalars, as fields(of:) reads them: a quote is never absorbed
        // into the character of a combining mark after it or a prepended one before.
        var out = "\"".unicodeScalars
        for scalar in field.unicodeScalars {
            if scalar == "\"" || scalar == "\\" { out.append("\\") }
            out.append(scalar)
        }
        out.append("\"")
        return String(out)
    }
}

/// Splits a line into fields: white space separates, double quotes group,
/// backslash escapes `"` and `\` inside quotes, an unquoted `#` at the start of a
/// field ends the line. It reads Unicode scalars, not characters: in characters,
/// a quote, space or `#` followed by a combining mark (or preceded by a
/// prepended one, U+0600) would be another character, and no longer the syntax.
func fields(of line: Substring) throws(LineError) -> [String] {
    var fields: [String] = []
    var current = String.UnicodeScalarView()
    var inField = false, inQuotes = false, escaped = false
    for scalar in line.unicodeScalars {
        if inQuotes {
            if escaped {
                // Only the two the syntax needs: `"a\rb"` must not quietly become `arb`.
                guard scalar == "\"" || scalar == "\\" else {
                    throw LineError("unknown escape in quotes: backslash before \"\(escapedForLog(String(scalar).utf8))\" (only \\\" and \\\\ are escapes)")
                }
                current.append(scalar)
                escaped = false
            }
            else if scalar == "\\" { escaped = true }
            else if scalar == "\"" { inQuotes = false }
            else { current.append(scalar) }
        } else if scalar == " " || scalar == "\t" || scalar == "\r" {
            if inField { fields.append(String(current)); current = String.UnicodeScalarView(); inField = false }
        } else if scalar == "#" && !inField {
            break
        } else if scalar == "\"" {
            inQuotes = true
            inField = true
        } else {
            current.append(scalar)
            inField = true
        }
    }
    if inQuotes { throw LineError("unterminated quote") }
    if inField { fields.append(String(current)) }
    return fields
}

/// What is wrong with one line.
struct LineError: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Parses the file line by line, collecting every error (not just the first).
private struct LineParser {
    let file: String
    let context: Configuration.Context
    var services: [Service] = []
    var help: HelpPolicy?
    var errors: [ConfigurationError] = []
    private var definedAt: [Int] = []
    private var helpLine = 0
    private var accountsCache: Accounts?

    init(file: String, context: Configuration.Context) {
        self.file = file
        self.context = context
    }

    mutating func parse(_ text: Substring, number: Int) {
        do throws(LineError) {
            let fields = try fields(of: text)
            guard let first = fields.first else { return }
            try parse(fields: fields, name: first, number: number)
        } catch {
            errors.append(ConfigurationError(file: file, line: number, message: error.message))
        }
    }

    /// The table, or every error: those of the lines, and each service whose
    /// name an earlier valid line already has (names sorted once: O(n log n),
    /// not a scan of the services before each line).
    func table() throws(InvalidConfiguration) -> ServiceTable {
        var errors = self.errors
        let duplicates = ServiceTable.duplicates(services, order: ServiceTable.sortedByName(services))
        for (later, first) in duplicates {
            errors.append(ConfigurationError(file: file, line: definedAt[later],
                message: "duplicate service name \"\(services[later].name)\" (first at line \(definedAt[first]))"))
        }
        guard errors.isEmpty else {
            throw InvalidConfiguration(errors: duplicates.isEmpty ? errors : errors.sorted { $0.line < $1.line })
        }
        do throws(ServiceTable.Error) {
            return try ServiceTable(services, help: help ?? HelpPolicy())
        } catch {
            // The checks above leave nothing for ServiceTable to refuse; should
            // one slip, the file is refused (fail closed), never a trap.
            throw InvalidConfiguration(errors: [ConfigurationError(file: file, line: 0, message: "\(error)")])
        }
    }

    private mutating func accounts() -> Accounts {
        if let accountsCache { return accountsCache }
        let loaded = context.accounts()
        accountsCache = loaded
        return loaded
    }

    private mutating func parse(fields: [String], name text: String, number: Int) throws(LineError) {
        guard let name = ServiceName(text) else {
            throw LineError("\"\(escapedForLog(text.utf8))\": not a service name a request could carry (1 to \(RequestParser.maximumNameLength) bytes of printable ASCII, no space)")
        }
        var options = Options()
        var rest = fields.dropFirst()
        while let field = rest.first, !["tcpmux", "exec", "forward"].contains(field) {
            rest.removeFirst()
            try options.take(field)
        }
        if name == .help {
            guard rest.isEmpty, options.onlyHelpOptions else {
                throw LineError("HELP takes only allow=, local= and off")
            }
            guard help == nil else { throw LineError("HELP configured twice (first at line \(helpLine))") }
            help = HelpPolicy(enabled: !options.off, access: options.access)
            helpLine = number
            return
        }
        if options.off { throw LineError("off applies to HELP only") }
        guard let handOffWord = rest.popFirst() else {
            throw LineError("\"\(name)\": missing hand-off (tcpmux, exec or forward)")
        }
        let handOff: HandOff
        switch handOffWord {
        case "tcpmux":
            guard rest.isEmpty else { throw LineError("tcpmux takes no arguments") }
            guard !options.serviceAcknowledges else { throw LineError("ack=service: the built-in tcpmux is the server's own") }
            handOff = .tcpmux
        case "exec":
            guard let path = rest.popFirst() else { throw LineError("exec needs a program path") }
            guard path.hasPrefix("/") else { throw LineError("program path must be absolute: \"\(escapedForLog(path.utf8))\"") }
            // execve(2) takes C strings: a NUL would silently cut a field short.
            guard !rest.contains(where: { $0.utf8.contains(0) }), !path.utf8.contains(0) else {
                throw LineError("exec path or argument holds a NUL byte")
            }
            let arguments = rest.isEmpty ? [String(path.split(separator: "/").last ?? "")] : Array(rest)
            handOff = .exec(Program(path: path, arguments: arguments, credentials: try credentials(options)))
        default:
            guard rest.count == 1, let target = ForwardTarget(rest.first!) else {
                throw LineError("forward needs one target: HOST:PORT, [IPV6]:PORT or an absolute socket path")
            }
            handOff = .forward(target)
        }
        if case .exec = handOff {} else if options.user != nil || options.group != nil {
            throw LineError("user= and group= apply to exec only")
        }
        if case .forward = handOff {} else if options.proxy != nil {
            throw LineError("proxy= applies to forward only")
        }
        services.append(Service(name: name, handOff: handOff, acknowledgement: try options.acknowledgement(),
                                access: options.access, hidden: options.hidden, proxyHeader: options.proxy))
        definedAt.append(number)
    }

    private mutating func credentials(_ options: Options) throws(LineError) -> Credentials? {
        guard let userText = options.user ?? (context.runningAsRoot ? Configuration.defaultUser : nil) else {
            guard options.group == nil else { throw LineError("group= needs user=") }
            return nil
        }
        switch accounts().credentials(user: userText, group: options.group) {
        case .success(let credentials): return credentials
        case .failure(let error): throw LineError(error.description)
        }
    }

    /// The options of one line, each allowed once.
    private struct Options {
        var access = Access()
        var hidden = false
        var off = false
        var message: String?
        var serviceAcknowledges = false
        var user: String?
        var group: String?
        var proxy: ProxyHeader.Version?
        private var seen: [String] = []

        var onlyHelpOptions: Bool { seen.allSatisfy { ["allow", "local", "off"].contains($0) } }

        mutating func take(_ field: String) throws(LineError) {
            let parts = field.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            guard !seen.contains(key) else { throw LineError("\(key) given twice") }
            seen.append(key)
            guard parts.count == 2 else {
                switch key {
                case "hidden": hidden = true
                case "off": off = true
                default: throw LineError("unknown keyword \"\(escapedForLog(key.utf8))\"")
                }
                return
            }
            let value = String(parts[1])
            switch key {
            case "allow": access.clients = try networks(value)
            case "local": access.locals = try networks(value)
            case "user": user = try nonEmpty(key, value)
            case "group": group = try nonEmpty(key, value)
            case "message":
                guard value.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
                    throw LineError("message= must be printable ASCII")
                }
                // libmill's tcpmux client reads the reply line into 256 bytes.
                guard value.utf8.count <= Configuration.maximumMessageLength else {
                    throw LineError("message= longer than \(Configuration.maximumMessageLength) bytes: the reply line, + and CRLF included, would exceed 256 bytes")
                }
                message = value
            case "proxy":
                guard let version = ProxyHeader.Version(rawValue: value) else { throw LineError("proxy= is v1 or v2") }
                proxy = version
            case "ack":
                guard value == "service" || value == "server" else { throw LineError("ack= is server or service") }
                serviceAcknowledges = value == "service"
            default:
                throw LineError("unknown keyword \"\(escapedForLog(key.utf8))\"")
            }
        }

        func acknowledgement() throws(LineError) -> Acknowledgement {
            guard serviceAcknowledges else { return .server(message ?? "OK") }
            guard message == nil else { throw LineError("message= and ack=service exclude each other") }
            return .service
        }

        private func nonEmpty(_ key: String, _ value: String) throws(LineError) -> String {
            guard !value.isEmpty else { throw LineError("\(key)= needs a value") }
            return value
        }

        private func networks(_ value: String) throws(LineError) -> [Network] {
            var result: [Network] = []
            for text in value.split(separator: ",", omittingEmptySubsequences: false) {
                guard let network = Network(String(text)) else {
                    throw LineError("bad address or network \"\(escapedForLog(text.utf8))\"")
                }
                result.append(network)
            }
            return result
        }
    }
}
