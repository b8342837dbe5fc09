// The exec hand-off: the program takes over the connection on fd 0, 1 and 2, as
// under inetd. Every check that can fail is made before the `+` is written.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import TCPMUXServices

struct HandOffFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Checks that `program` can run as its user, then becomes that user for good:
/// after this, nothing runs as root unless the service is configured to. The
/// anchors reply `+Go` first and fail later; we fail here, before any `+`.
func prepareExec(_ program: Program) -> Result<Void, HandOffFailure> {
    // A lowered server checks with root's eyes, as the switch will be made.
    if geteuid() != 0 && getuid() == 0 && seteuid(0) != 0 { return .failure(HandOffFailure("seteuid 0: \(Errno.current)")) }
    var status = stat()
    guard stat(program.path, &status) == 0 else {
        return .failure(HandOffFailure("\(program.path): \(Errno.current)"))
    }
    guard status.st_mode & S_IFMT == S_IFREG else { return .failure(HandOffFailure("\(program.path): not a regular file")) }
    let uid = program.credentials?.uid ?? geteuid()
    let groups = program.credentials?.groups ?? [getegid()]
    let executable: mode_t = uid == 0 ? (S_IXUSR | S_IXGRP | S_IXOTH)
        : status.st_uid == uid ? S_IXUSR
        : groups.contains(status.st_gid) ? S_IXGRP
        : S_IXOTH
    guard status.st_mode & executable != 0 else {
        return .failure(HandOffFailure("\(program.path): not executable by uid \(uid)"))
    }
    if let problem = formatProblem(program.path) { return .failure(HandOffFailure("\(program.path): \(problem)")) }
    guard let credentials = program.credentials else {
        // The configuration gives every service a user when we run as root; this
        // is the last guard against a service inheriting root (CVE-2013-4342).
        return geteuid() == 0 ? .failure(HandOffFailure("no user for a service of a root server")) : .success(())
    }
    return become(credentials)
}

/// Why execve(2) would refuse the file's format (ENOEXEC), judged by its first
/// bytes: an ELF image or a `#!` script is what Linux runs. A file we may not
/// read is left to execve (execute-only binaries exist).
private func formatProblem(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var magic = [UInt8](repeating: 0, count: 4)
    let count = magic.withUnsafeMutableBytes { read(fd, $0.baseAddress!, 4) }
    if count >= 2 && magic[0] == UInt8(ascii: "#") && magic[1] == UInt8(ascii: "!") { return nil }
    if count == 4 && magic == [0x7F, UInt8(ascii: "E"), UInt8(ascii: "L"), UInt8(ascii: "F")] { return nil }
    return "neither an ELF executable nor a #! script"
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
/// other descriptor, default signal dispositions, the core limit it was started
/// with, `/` as working directory (as under inetd). Returns only on failure.
func execProgram(_ program: Program, environment: [String], input: Int32, output: Int32, coreLimit: rlimit) -> Errno {
    signal(SIGPIPE, SIG_DFL)
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
    execve(program.path, argv, envp)
    return .current
}

/// FD_CLOEXEC on every open descriptor from `first` up, as listed in
/// /proc/self/fd (or, without /proc, up to 1024).
private func markDescriptorsCloseOnExec(from first: Int32) {
    guard let directory = opendir("/proc/self/fd") else {
        for fd in first..<1024 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return
    }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let fd = Int32(name), fd >= first { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }
}
