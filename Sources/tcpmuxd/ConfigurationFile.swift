// Loading the service table: the configuration file, or the built-in table.
import CSystem
import TCPMUXServices

/// Why the service table could not be loaded; the server then fails closed.
enum TableLoadError: Error, CustomStringConvertible {
    /// The file could not be read, or is not one a root server may trust: the
    /// path and the problem, with the errno if a system call refused.
    case unreadable(path: String, problem: String, errno: Errno?)
    /// The file was read, and is wrong (every mistake, FILE:LINE).
    case invalid(InvalidConfiguration)

    static func unreadable(_ path: String, _ errno: Errno) -> TableLoadError {
        .unreadable(path: path, problem: "", errno: errno)
    }

    static func refused(_ path: String, _ problem: String) -> TableLoadError {
        .unreadable(path: path, problem: problem, errno: nil)
    }

    var description: String {
        switch self {
        case .unreadable(let path, let problem, let errno):
            var text = path
            if !problem.isEmpty { text += ": " + problem }
            if let errno { text += ": \(errno)" }
            return text
        case .invalid(let invalid): return invalid.description
        }
    }
}

/// The most a configuration file may hold; a larger one is a mistake.
let configurationSizeLimit = 1 << 20

/// The whole of a small file, read through one open descriptor, so that a file
/// replaced while we read is seen whole, old or new, never a mix.
/// `check` inspects the open file (fstat) before its contents are read.
/// O_NONBLOCK: a FIFO put in the file's place must not make open(2) wait for a
/// writer; it is refused as not a regular file.
func readSmallFile(_ path: String, limit: Int, check: (stat) -> String? = { _ in nil }) throws(TableLoadError) -> [UInt8] {
    let fd = try valueOrFailure({ TableLoadError.unreadable(path, $0) }) { csystem_open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) }
    return try readSmallFile(fd, path: path, limit: limit, check: check)
}

/// As above, from a descriptor already open (closed here).
func readSmallFile(_ fd: Int32, path: String, limit: Int, check: (stat) -> String? = { _ in nil }) throws(TableLoadError) -> [UInt8] {
    defer { close(fd) }
    var status = stat()
    try nothingOrFailure({ TableLoadError.unreadable(path, $0) }) { fstat(fd, &status) }
    guard status.st_mode & csystem_type_mask == csystem_type_regular else { throw .refused(path, "not a regular file") }
    if let problem = check(status) { throw .refused(path, problem) }
    var contents: [UInt8] = []
    // Uninitialized: only what read(2) wrote is used.
    var buffer = [UInt8](unsafeUninitializedCapacity: 16384) { _, count in count = 16384 }
    while true {
        let got = buffer.withUnsafeMutableBytes { space in Result { () throws(Errno) in try valueOrErrno { read(fd, space.baseAddress!, space.count) } } }
        let count: Int
        switch got {
        case .success(let value): count = value
        case .failure(let error): throw .unreadable(path, error)
        }
        if count == 0 { return contents }
        contents += buffer[..<count]
        if contents.count > limit { throw .refused(path, "larger than \(limit) bytes") }
    }
}

/// Linux's O_PATH: a descriptor that names an entry without opening it, so that
/// a FIFO does not block and a symbolic link can be read (readlinkat "").
private let openPathOnly = csystem_open_path_only

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
func openChecked(_ path: String) throws(TableLoadError) -> Int32 {
    func refusal(_ problem: String) -> TableLoadError { .refused(path, problem + "; refusing it") }
    @discardableResult
    func system<Value: FixedWidthInteger>(_ call: () -> Value) throws(TableLoadError) -> Value {
        try valueOrFailure({ TableLoadError.unreadable(path, $0) }, call)
    }
    var names: [String] = []  // still to walk, last first
    var walked: [String] = []  // where the walk is, for messages
    func push(_ text: String) {
        names += text.split(separator: "/", omittingEmptySubsequences: true).reversed().map { String($0) }
    }
    func shown() -> String {
        var text = ""
        for name in walked { text += "/" + name }
        return text.isEmpty ? "/" : text
    }
    push(path)
    if !path.hasPrefix("/") {
        // Relative to the working directory, whose own path is checked too.
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { throw refusal("no working directory") }
        push(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    }
    var directory = try system { csystem_open("/", openPathOnly | O_DIRECTORY | O_CLOEXEC) }
    defer { close(directory) }
    var shared = false  // whether `directory` is world-writable (sticky)
    var links = 0
    // Checks the directory about to be searched.
    func checkDirectory(_ status: stat) throws(TableLoadError) {
        if status.st_uid != 0 { throw refusal("directory \(shown()) is owned by uid \(status.st_uid), not root") }
        let writable = status.st_mode & (csystem_write_group | csystem_write_other)
        if writable != 0 && status.st_mode & csystem_sticky == 0 {
            throw refusal("directory \(shown()) is writable by group or others (mode \(String(status.st_mode & 0o7777, radix: 8)))")
        }
        shared = writable != 0
    }
    var status = stat()
    try system { fstat(directory, &status) }
    try checkDirectory(status)
    while let name = names.popLast() {
        if name == "." { continue }
        let entry = try system { csystem_openat(directory, name, openPathOnly | O_NOFOLLOW | O_CLOEXEC) }
        do throws(TableLoadError) { try system { fstat(entry, &status) } } catch {
            close(entry)
            throw error
        }
        if name == ".." { _ = walked.popLast() } else { walked.append(name) }
        switch status.st_mode & csystem_type_mask {
        case csystem_type_directory:
            close(directory)
            directory = entry
            try checkDirectory(status)
        case csystem_type_symbolic_link:
            defer { close(entry) }
            if status.st_uid != 0 { throw refusal("symbolic link \(shown()) is owned by uid \(status.st_uid), not root") }
            links += 1
            guard links <= 40 else { throw .unreadable(path, Errno(ELOOP)) }
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
            let count = try system { buffer.withUnsafeMutableBytes { readlinkat(entry, "", $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) } }
            guard count < buffer.count else { throw .unreadable(path, Errno(ENAMETOOLONG)) }
            let target = String(decoding: buffer[..<count], as: UTF8.self)
            _ = walked.popLast()
            if target.hasPrefix("/") {
                let root = try system { csystem_open("/", openPathOnly | O_DIRECTORY | O_CLOEXEC) }
                close(directory)
                directory = root
                walked = []
                try system { fstat(directory, &status) }
                try checkDirectory(status)
            }
            push(target)
        default:
            close(entry)
            guard names.isEmpty else { throw .unreadable(path, Errno(ENOTDIR)) }
            if shared && status.st_nlink > 1 {
                throw refusal("\(shown()) has \(status.st_nlink) links in a directory others can write to")
            }
            // What root left in a directory only root can change: the same entry.
            return try system { csystem_openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) }
        }
    }
    // The path ends in a directory.
    throw refusal("not a regular file")
}

/// As sshd's StrictModes: a root server refuses a file that anyone but root
/// could have written, since the file says what runs as whom.
private func ownershipProblem(_ status: stat) -> String? {
    if status.st_uid != 0 { return "owned by uid \(status.st_uid), not root; refusing it" }
    if status.st_mode & (csystem_write_group | csystem_write_other) != 0 {
        return "writable by group or others (mode \(String(status.st_mode & 0o7777, radix: 8))); refusing it"
    }
    return nil
}

/// The local accounts (see Accounts: no NSS in a static binary), or why
/// /etc/passwd or /etc/group could not be read.
func readAccounts() throws(TableLoadError) -> Accounts {
    func text(_ path: String) throws(TableLoadError) -> String {
        String(decoding: try readSmallFile(path, limit: 16 << 20), as: UTF8.self)
    }
    return Accounts(passwd: try text("/etc/passwd"), group: try text("/etc/group"))
}

/// The local accounts for the configuration: unreadable files resolve no names,
/// and whatever needs them then fails, closed.
private func accountsOrNone() -> Accounts {
    (try? readAccounts()) ?? Accounts(passwd: "", group: "")
}

/// The table this connection is served from. Without `-f`, a missing default
/// file means the built-in table; any other failure is an error, and the caller
/// fails closed: never a partial table.
func loadServiceTable(_ options: Options, runningAsRoot: Bool) throws(TableLoadError) -> (table: ServiceTable, source: String) {
    let path = options.configurationFile ?? Options.defaultConfigurationFile
    if options.configurationFile == nil {
        do throws(Errno) { try nothingOrErrno { access(path, F_OK) } } catch .noEntry {
            return (.builtIn, "built-in table (no \(path))")
        } catch {
            // Anything else is for the open below to report.
        }
    }
    let context = Configuration.Context(runningAsRoot: runningAsRoot, accounts: accountsOrNone)
    // As root, the path is checked as well as the file (StrictModes).
    let bytes = runningAsRoot
        ? try readSmallFile(try openChecked(path), path: path, limit: configurationSizeLimit, check: ownershipProblem)
        : try readSmallFile(path, limit: configurationSizeLimit)
    do throws(InvalidConfiguration) {
        return (try Configuration.parse(bytes, file: path, context: context), path)
    } catch {
        throw .invalid(error)
    }
}
