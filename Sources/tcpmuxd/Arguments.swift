// The command line, and the signal the shell ignores.
import CSystem

/// The arguments after the program name, as glibc handed them over. Not
/// CommandLine.arguments: the static Swift runtime reads those through /proc and
/// returns none when no descriptor is free at start-up, which would silently drop
/// `-f` (fail open); Embedded Swift has none at all.
func commandLineArguments() -> [String] {
    let count = Int(csystem_argument_count())
    guard count > 1, let arguments = csystem_arguments() else { return [] }
    var result: [String] = []
    for index in 1..<count {
        if let argument = arguments[index] { result.append(String(cString: argument)) }
    }
    return result
}

/// Keeps a client that closed early from killing us with SIGPIPE: writes then
/// fail with EPIPE, which the caller handles.
func ignoreBrokenPipes() {
    _ = csystem_signal_ignore(SIGPIPE)
}
