import TCPMUXProtocol

/// The command line: `in.tcpmuxd [-dhnV] [-f file] [-t seconds] [-u user]`, parsed as getopt(3) would
/// (flags may be grouped, `-t5` and `-t 5` are the same, `--` ends the options).
public struct Options: Equatable, Sendable {
    public enum Action: Equatable, Sendable {
        /// Serve one connection on fd 0 (requests) and fd 1 (replies), as inetd starts us.
        case serve
        /// Parse the configuration, print the normalized table, serve nothing.
        case checkConfiguration
        case printUsage
        case printVersion
    }

    public static let usage = "usage: in.tcpmuxd [-dhnV] [-f file] [-t seconds] [-u user]"
    public static let defaultConfigurationFile = "/etc/tcpmuxd.conf"
    public static let timeoutRange = 1...3600

    public var action = Action.serve
    /// The total time a client has to send its request line(s), nested ones included.
    public var timeoutSeconds = 10
    /// Copy the log lines to standard error (interactive runs only: under inetd,
    /// fd 2 is the client's socket).
    public var debug = false
    /// `-f`: a file that must exist. Without it, the default file is used if it
    /// exists and the built-in table if it does not.
    public var configurationFile: String?
    /// Who a root server becomes before reading the request, when no exec
    /// service needs it to stay able to switch users.
    public var unprivilegedUser = "nobody"

    public struct UsageError: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init() {}

    public init(arguments: [String]) throws(UsageError) {
        var remaining = arguments[...]
        while let argument = remaining.first, argument.hasPrefix("-"), argument != "-" {
            remaining.removeFirst()
            if argument == "--" { break }
            var flags = argument.utf8.dropFirst()
            while let flag = flags.popFirst() {
                switch flag {
                case UInt8(ascii: "d"): debug = true
                case UInt8(ascii: "h"): action = .printUsage
                case UInt8(ascii: "V"): action = .printVersion
                case UInt8(ascii: "n"): action = .checkConfiguration
                case UInt8(ascii: "f"):
                    configurationFile = try Options.value(of: "-f", &flags, &remaining)
                case UInt8(ascii: "u"):
                    unprivilegedUser = try Options.value(of: "-u", &flags, &remaining)
                case UInt8(ascii: "t"):
                    let value = try Options.value(of: "-t", &flags, &remaining)
                    guard value.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let seconds = Int(value),
                          Self.timeoutRange.contains(seconds) else {
                        throw UsageError(description: "-t \(value): not a whole number of seconds from \(Self.timeoutRange.lowerBound) to \(Self.timeoutRange.upperBound)")
                    }
                    timeoutSeconds = seconds
                default:
                    throw UsageError(description: "unknown option -\(escapedForLog([flag]))")
                }
            }
        }
        if let extra = remaining.first {
            throw UsageError(description: "unexpected argument \(extra)")
        }
    }

    /// An option's value: the rest of its argument (`-t5`) or the next one (`-t 5`).
    private static func value(of option: String, _ flags: inout String.UTF8View.SubSequence,
                              _ remaining: inout ArraySlice<String>) throws(UsageError) -> String {
        if !flags.isEmpty {
            defer { flags = flags.dropFirst(flags.count) }
            return String(decoding: flags, as: UTF8.self)
        }
        guard let next = remaining.popFirst(), !next.isEmpty else {
            throw UsageError(description: "option \(option) needs a value")
        }
        return next
    }
}
