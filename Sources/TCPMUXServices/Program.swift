/// The user and groups an exec'd service runs as (setgroups, setgid, setuid).
public struct Credentials: Equatable, Sendable {
    public let user: String
    public let uid: UInt32
    public let gid: UInt32
    public let groups: [UInt32]

    public init(user: String, uid: UInt32, gid: UInt32, groups: [UInt32]) {
        self.user = user
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }
}

/// A program that takes over the connection on fd 0, 1 and 2, as under inetd.
public struct Program: Equatable, Sendable {
    /// Absolute.
    public let path: String
    /// argv, argv[0] included.
    public let arguments: [String]
    /// nil: run as the server runs (only when the server is not root).
    public let credentials: Credentials?

    public init(path: String, arguments: [String], credentials: Credentials?) {
        self.path = path
        self.arguments = arguments
        self.credentials = credentials
    }
}
