// Loading the service table: the configuration file, or the built-in table.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import TCPMUXServices

/// The most a configuration file may hold; a larger one is a mistake.
let configurationSizeLimit = 1 << 20

/// The whole of a small file, read through one open descriptor, so that a file
/// replaced while we read is seen whole, old or new, never a mix.
/// `check` inspects the open file (fstat) before its contents are read.
/// O_NONBLOCK: a FIFO put in the file's place must not make open(2) wait for a
/// writer; it is refused as not a regular file.
func readSmallFile(_ path: String, limit: Int, check: (stat) -> String? = { _ in nil }) -> Result<[UInt8], ConfigurationLoadError> {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
    defer { close(fd) }
    var status = stat()
    guard fstat(fd, &status) == 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
    guard status.st_mode & S_IFMT == S_IFREG else { return .failure(ConfigurationLoadError("\(path): not a regular file")) }
    if let problem = check(status) { return .failure(ConfigurationLoadError("\(path): \(problem)")) }
    var contents: [UInt8] = []
    // Uninitialized: only what read(2) wrote is used.
    var buffer = [UInt8](unsafeUninitializedCapacity: 16384) { _, count in count = 16384 }
    while true {
        let count = buffer.withUnsafeMutableBytes { space in retryingOnInterrupt { read(fd, space.baseAddress!, space.count) } }
        if count < 0 { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
        if count == 0 { return .success(contents) }
        contents += buffer[..<count]
        if contents.count > limit { return .failure(ConfigurationLoadError("\(path): larger than \(limit) bytes")) }
    }
}

struct ConfigurationLoadError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
    init(path: String, errno code: Int32) { description = "\(path): \(Errno(code: code))" }
}

/// As sshd's StrictModes: a root server refuses a file that anyone but root
/// could have written, since the file says what runs as whom.
private func ownershipProblem(_ status: stat) -> String? {
    guard geteuid() == 0 else { return nil }
    if status.st_uid != 0 { return "owned by uid \(status.st_uid), not root; refusing it" }
    if status.st_mode & (S_IWGRP | S_IWOTH) != 0 {
        return "writable by group or others (mode \(String(status.st_mode & 0o7777, radix: 8))); refusing it"
    }
    return nil
}

/// The local accounts (see Accounts: no NSS in a static binary). A missing or
/// unreadable file resolves no names: whatever needs them then fails, closed.
func readAccounts() -> Accounts {
    func text(_ path: String) -> String {
        (try? readSmallFile(path, limit: 16 << 20).get()).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }
    return Accounts(passwd: text("/etc/passwd"), group: text("/etc/group"))
}

/// The table this connection is served from. Without `-f`, a missing default
/// file means the built-in table; any other failure is an error, and the caller
/// fails closed: never a partial table.
func loadServiceTable(_ options: Options) -> Result<(table: ServiceTable, source: String), Error> {
    let path = options.configurationFile ?? Options.defaultConfigurationFile
    if options.configurationFile == nil && access(path, F_OK) != 0 && errno == ENOENT {
        return .success((.builtIn, "built-in table (no \(path))"))
    }
    let context = Configuration.Context(runningAsRoot: geteuid() == 0, accounts: readAccounts)
    do {
        let bytes = try readSmallFile(path, limit: configurationSizeLimit, check: ownershipProblem).get()
        let table = try Configuration.parse(bytes, file: path, context: context)
        return .success((table, path))
    } catch {
        return .failure(error)
    }
}
