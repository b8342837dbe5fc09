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
    return readSmallFile(fd, path: path, limit: limit, check: check)
}

/// As above, from a descriptor already open (closed here).
func readSmallFile(_ fd: Int32, path: String, limit: Int, check: (stat) -> String? = { _ in nil }) -> Result<[UInt8], ConfigurationLoadError> {
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

/// Linux's O_PATH (010000000 in <bits/fcntl-linux.h>), which Glibc declares
/// only with _GNU_SOURCE: a descriptor that names an entry without opening it,
/// so that a FIFO does not block and a symbolic link can be read (readlinkat "").
private let openPathOnly: Int32 = 0o10000000

/// StrictModes for the path (sshd's safe_path and secure_filename, OpenSSH
/// misc.c): opens `path` for reading only if nobody but root could have chosen
/// what it leads to. The path is walked one name at a time from `/`, each
/// looked up with openat(2) in the directory just checked and never following a
/// link by itself, so what is checked is what is opened: every directory on the
/// way must be root's and writable by nobody else, every symbolic link root's
/// (its target is walked and checked the same way), and the file is opened last
/// with O_NOFOLLOW. Whoever may write a directory on the way could otherwise
/// put another root-owned file, or a link to one, in the configuration's place.
/// A world-writable directory is accepted only with the sticky bit and root as
/// owner (/tmp): there nobody else can rename or remove root's entries; a file
/// reached through one must have a single link (a hard link made there by
/// someone else is refused).
func openChecked(_ path: String) -> Result<Int32, ConfigurationLoadError> {
    func failure(_ problem: String) -> Result<Int32, ConfigurationLoadError> {
        .failure(ConfigurationLoadError("\(path): \(problem); refusing it"))
    }
    var names: [String] = []  // still to walk, last first
    var walked: [String] = []  // where the walk is, for messages
    func push(_ text: String) {
        names += text.split(separator: "/", omittingEmptySubsequences: true).reversed().map(String.init)
    }
    func shown() -> String { "/" + walked.joined(separator: "/") }
    push(path)
    if !path.hasPrefix("/") {
        // Relative to the working directory, whose own path is checked too.
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
        push(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    var directory = open("/", openPathOnly | O_DIRECTORY | O_CLOEXEC)
    guard directory >= 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
    defer { close(directory) }
    var shared = false  // whether `directory` is world-writable (sticky)
    var links = 0
    // Checks the directory about to be searched; nil if it is safe.
    func checkDirectory(_ status: stat) -> String? {
        if status.st_uid != 0 { return "directory \(shown()) is owned by uid \(status.st_uid), not root" }
        let writable = status.st_mode & (S_IWGRP | S_IWOTH)
        if writable != 0 && status.st_mode & S_ISVTX == 0 {
            return "directory \(shown()) is writable by group or others (mode \(String(status.st_mode & 0o7777, radix: 8)))"
        }
        shared = writable != 0
        return nil
    }
    var status = stat()
    guard fstat(directory, &status) == 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
    if let problem = checkDirectory(status) { return failure(problem) }
    while let name = names.popLast() {
        if name == "." { continue }
        let entry = openat(directory, name, openPathOnly | O_NOFOLLOW | O_CLOEXEC)
        guard entry >= 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
        guard fstat(entry, &status) == 0 else {
            let code = errno
            close(entry)
            return .failure(ConfigurationLoadError(path: path, errno: code))
        }
        if name == ".." { _ = walked.popLast() } else { walked.append(name) }
        switch status.st_mode & S_IFMT {
        case S_IFDIR:
            close(directory)
            directory = entry
            if let problem = checkDirectory(status) { return failure(problem) }
        case S_IFLNK:
            defer { close(entry) }
            if status.st_uid != 0 { return failure("symbolic link \(shown()) is owned by uid \(status.st_uid), not root") }
            links += 1
            guard links <= 40 else { return .failure(ConfigurationLoadError(path: path, errno: ELOOP)) }
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
            let count = buffer.withUnsafeMutableBytes { readlinkat(entry, "", $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
            guard count >= 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
            guard count < buffer.count else { return .failure(ConfigurationLoadError(path: path, errno: ENAMETOOLONG)) }
            let target = String(decoding: buffer[..<count], as: UTF8.self)
            _ = walked.popLast()
            if target.hasPrefix("/") {
                let root = open("/", openPathOnly | O_DIRECTORY | O_CLOEXEC)
                guard root >= 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
                close(directory)
                directory = root
                walked = []
                guard fstat(directory, &status) == 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
                if let problem = checkDirectory(status) { return failure(problem) }
            }
            push(target)
        default:
            close(entry)
            guard names.isEmpty else { return .failure(ConfigurationLoadError(path: path, errno: ENOTDIR)) }
            if shared && status.st_nlink > 1 {
                return failure("\(shown()) has \(status.st_nlink) links in a directory others can write to")
            }
            // What root left in a directory only root can change: the same entry.
            let file = openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
            guard file >= 0 else { return .failure(ConfigurationLoadError(path: path, errno: errno)) }
            return .success(file)
        }
    }
    // The path ends in a directory.
    return failure("not a regular file")
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
        // As root, the path is checked as well as the file (StrictModes).
        let bytes = try (geteuid() == 0 ? openChecked(path).flatMap { readSmallFile($0, path: path, limit: configurationSizeLimit, check: ownershipProblem) }
                                         : readSmallFile(path, limit: configurationSizeLimit)).get()
        let table = try Configuration.parse(bytes, file: path, context: context)
        return .success((table, path))
    } catch {
        return .failure(error)
    }
}
