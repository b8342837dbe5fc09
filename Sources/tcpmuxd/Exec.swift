// The exec hand-off: the program takes over the connection on fd 0, 1 and 2, as
// under inetd. Every check that can fail is made before the `+` is written.
import CSystem
import TCPMUXProtocol
import TCPMUXServices

/// The exec hand-off, checked in full before its `+`. Returns only if it was
/// refused, its `-` line written (or the `+` could not be).
func execHandOff(_ program: Program, acceptance: Reply?, service: ServiceName, privileges: inout PrivilegeState,
                 transcript: inout Transcript, client: SocketAddress?, local: SocketAddress?, coreLimit: rlimit) {
    do throws(HandOffFailure) {
        try prepareExec(program, privileges: &privileges)
    } catch {
        transcript.append("exec failed: \(error)")
        _ = send(Session.failedHandOff, transcript: &transcript)
        return
    }
    if let acceptance, !send(acceptance, transcript: &transcript) { return }
    transcript.append("exec \(program.path) as \(program.credentials?.user ?? "self")")
    transcript.log()
    let environment = serviceEnvironment(service: service.description, client: client, local: local)
    let failure = execProgram(program, environment: environment, input: requestInput, output: replyOutput, coreLimit: coreLimit)
    SystemLog.error("exec after +: \(failure)")
    exit(1)
}

/// Checks that `program` can run as its user, with that user's eyes, then
/// becomes that user for good: after this, nothing runs as root unless the
/// service is configured to. The anchors reply `+Go` first and fail later; we
/// fail here, before any `+`. A lowered server takes the user's effective ids
/// for the checks and keeps root until they are done, so that a refusal still
/// answers and drains as the unprivileged user, never as the service's user.
func prepareExec(_ program: Program, privileges: inout PrivilegeState) throws(HandOffFailure) {
    guard let credentials = program.credentials else {
        // The configuration gives every service a user when we run as root; this
        // is the last guard against a service inheriting root (CVE-2013-4342).
        if privileges != .notRoot {
            try refuse("no user for a service of a root server", privileges: &privileges)
        }
        try check(program)
        return
    }
    if privileges.holdsRoot {
        do throws(PrivilegeFailure) { try assume(credentials) } catch {
            try refuse("\(error)", privileges: &privileges)
        }
    }
    do throws(HandOffFailure) { try check(program) } catch {
        try refuse("\(error)", privileges: &privileges)
    }
    do throws(PrivilegeFailure) { privileges = try settle(privileges, as: credentials) } catch {
        try refuse("\(error)", privileges: &privileges)
    }
}

/// A failed exec hand-off: a lowered server gives root up for good, as the
/// unprivileged user, before the refusal is written; then the failure.
private func refuse(_ reason: String, privileges: inout PrivilegeState) throws(HandOffFailure) -> Never {
    if let unprivileged = privileges.refusalIdentity {
        do throws(PrivilegeFailure) { privileges = try settle(privileges, as: unprivileged) } catch {
            // Nothing may run with root kept: no refusal at all.
            SystemLog.error("exec refused (\(reason)), then \(error)")
            exit(1)
        }
    }
    throw HandOffFailure(reason)
}

/// What execve(2) would refuse, judged as the current effective user (the
/// service's): a file that is missing, not regular, not executable by that user
/// (search permission on every directory, the mode, a noexec mount: faccessat
/// with AT_EACCESS asks the kernel itself), in a format Linux does not run, or
/// a `#!` script whose interpreter fails the same checks, itself a script
/// perhaps: the kernel follows at most 4 interpreters (BINPRM_MAX_RECURSION in
/// fs/exec.c), and so do these checks.
private func check(_ program: Program) throws(HandOffFailure) {
    var path = program.path
    for depth in 0...4 {
        do throws(HandOffFailure) {
            try checkExecutable(path)
            switch format(path) {
            case .elf, .unreadable: return
            case .other: throw HandOffFailure("\(path): neither an ELF executable nor a #! script")
            case .script(let interpreter):
                guard depth < 4 else { throw HandOffFailure("\(path): interpreters nested more than 4 deep") }
                // Relative to `/`, the working directory the program gets.
                path = interpreter.hasPrefix("/") ? interpreter : "/" + interpreter
            }
        } catch {
            throw depth == 0 ? error : HandOffFailure("\(program.path): interpreter \(error)")
        }
    }
}

/// A regular file the effective user may execute.
private func checkExecutable(_ path: String) throws(HandOffFailure) {
    var status = stat()
    try nothingOrFailure({ HandOffFailure(path, $0) }) { stat(path, &status) }
    guard status.st_mode & csystem_type_mask == csystem_type_regular else { throw HandOffFailure("\(path): not a regular file") }
    try nothingOrFailure({ HandOffFailure("\(path): not executable by uid \(geteuid())", $0) }) {
        faccessat(AT_FDCWD, path, X_OK, AT_EACCESS)
    }
}

private enum Format {
    case elf
    /// `#!` and the interpreter's path.
    case script(String)
    case other
    /// Not readable by the user: left to execve (execute-only binaries exist).
    case unreadable
}

/// The file's format, by its first bytes: an ELF image or a `#!` script is
/// what Linux runs (anything else fails with ENOEXEC). The interpreter is the
/// first word after `#!` on the first line, as fs/binfmt_script.c reads it
/// (within the first 256 bytes).
private func format(_ path: String) -> Format {
    guard let fd = try? valueOrErrno({ csystem_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }) else { return .unreadable }
    defer { close(fd) }
    var head = [UInt8](repeating: 0, count: 256)
    let got = head.withUnsafeMutableBytes { space in try? valueOrErrno { read(fd, space.baseAddress!, space.count) } }
    guard let count = got, count >= 2 else { return .other }
    let bytes = head[..<count]
    if count >= 4 && Array(bytes.prefix(4)) == [0x7F, UInt8(ascii: "E"), UInt8(ascii: "L"), UInt8(ascii: "F")] { return .elf }
    guard bytes[0] == UInt8(ascii: "#") && bytes[1] == UInt8(ascii: "!") else { return .other }
    let line = bytes.dropFirst(2).prefix { $0 != UInt8(ascii: "\n") }
    let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
    let interpreter = line.drop(while: isBlank).prefix { !isBlank($0) && $0 != 0 }
    guard !interpreter.isEmpty else { return .other }
    return .script(String(decoding: interpreter, as: UTF8.self))
}

/// The service's environment: nothing of ours, the connection's addresses under
/// ucspi-tcp's names, and the service name.
func serviceEnvironment(service: String, client: SocketAddress?, local: SocketAddress?) -> [String] {
    var environment = ["PATH=/usr/local/bin:/usr/bin:/bin", "PROTO=TCP", "TCPMUXSERVICE=\(service)"]
    if let client { environment += ["TCPREMOTEIP=\(client.address)", "TCPREMOTEPORT=\(client.port)"] }
    if let local { environment += ["TCPLOCALIP=\(local.address)", "TCPLOCALPORT=\(local.port)"] }
    return environment
}

/// Replaces this process with the program: the connection on fd 0, 1 and 2, no
/// other descriptor, every signal at its default action and none blocked
/// (whatever the superserver left ignored or blocked survives execve(2): an
/// ignored SIGCHLD breaks wait(2) in a service that forks), umask 022, the core
/// limit it was started with, `/` as working directory (as under inetd).
/// Returns only on failure.
func execProgram(_ program: Program, environment: [String], input: Int32, output: Int32, coreLimit: rlimit) -> HandOffFailure {
    csystem_reset_signals()
    umask(0o022)
    var coreLimit = coreLimit
    setrlimit(Int32(RLIMIT_CORE.rawValue), &coreLimit)
    _ = chdir("/")
    if input != 0 { dup2(input, 0) }
    if output != 1 { dup2(output, 1) }
    dup2(1, 2)
    closelog()
    markDescriptorsCloseOnExec(from: 3)
    let argv = program.arguments.map { strdup($0) } + [nil]
    let envp = environment.map { strdup($0) } + [nil]
    do throws(HandOffFailure) {
        try nothingOrFailure({ HandOffFailure("execve \(program.path)", $0) }) { execve(program.path, argv, envp) }
    } catch {
        return error
    }
    return HandOffFailure("execve \(program.path) returned")
}

/// FD_CLOEXEC on every open descriptor from `first` up: one close_range(2)
/// call, or where that fails (a kernel before 5.11, a seccomp filter) each one
/// listed in /proc/self/fd (or, without /proc, up to 1024).
private func markDescriptorsCloseOnExec(from first: Int32) {
    if csystem_close_on_exec_from(UInt32(first)) == 0 { return }
    guard let directory = opendir("/proc/self/fd") else {
        for fd in first..<1024 { _ = csystem_fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return
    }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let fd = Int32(name), fd >= first { _ = csystem_fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }
}
