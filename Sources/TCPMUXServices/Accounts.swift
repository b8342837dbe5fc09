import TCPMUXProtocol

/// Users and groups, read from the text of /etc/passwd and /etc/group.
///
/// The release binary is a fully static glibc executable, in which getpwnam(3)
/// and getgrnam(3) go through NSS modules that glibc would dlopen at run time,
/// which only works with the exact glibc it was linked against. So in.tcpmuxd
/// reads the two files itself: local accounts only (no LDAP, no sssd);
/// numeric ids work everywhere.
public struct Accounts: Sendable {
    public struct AccountError: Error, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    public struct User: Equatable, Sendable {
        public let name: String
        public let uid: UInt32
        public let gid: UInt32
    }

    public struct Group: Equatable, Sendable {
        public let name: String
        public let gid: UInt32
        public let members: [String]
    }

    public let users: [User]
    public let groups: [Group]

    public init(passwd: String, group: String) {
        users = Accounts.records(passwd).compactMap { fields in
            guard fields.count >= 4, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { return nil }
            return User(name: fields[0], uid: uid, gid: gid)
        }
        groups = Accounts.records(group).compactMap { fields in
            guard fields.count >= 4, let gid = UInt32(fields[2]) else { return nil }
            return Group(name: fields[0], gid: gid, members: fields[3].split(separator: ",").map(String.init))
        }
    }

    /// The colon-separated fields of each line; comments, blank lines and NIS
    /// `+`/`-` entries are skipped.
    private static func records(_ text: String) -> [[String]] {
        text.split(separator: "\n").compactMap { line in
            guard let first = line.first, first != "#", first != "+", first != "-" else { return nil }
            return line.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
    }

    /// A user of the file, by name or by number.
    public func user(_ text: String) -> User? {
        users.first { $0.name == text } ?? UInt32(text).flatMap { uid in users.first { $0.uid == uid } }
    }

    public func group(_ text: String) -> UInt32? {
        if let found = groups.first(where: { $0.name == text }) { return found.gid }
        return UInt32(text)
    }

    /// Who `user` (a name or a number) is, with `group` (likewise) as primary
    /// group if given; the message says why not.
    public func credentials(user userText: String, group groupText: String?) -> Result<Credentials, AccountError> {
        var gid: UInt32?
        if let groupText {
            guard let found = group(groupText) else { return .failure(AccountError("unknown group \"\(escapedForLog(groupText.utf8))\"")) }
            gid = found
        }
        if let user = user(userText) {
            let primary = gid ?? user.gid
            return .success(Credentials(user: user.name, uid: user.uid, gid: primary,
                                        groups: supplementaryGroups(of: user, primary: primary)))
        }
        guard let uid = UInt32(userText) else { return .failure(AccountError("unknown user \"\(escapedForLog(userText.utf8))\"")) }
        guard let gid else { return .failure(AccountError("user \(uid) is not in /etc/passwd: give group= too")) }
        return .success(Credentials(user: userText, uid: uid, gid: gid, groups: [gid]))
    }

    /// The groups initgroups(3) would give: the primary one and each listing the user.
    public func supplementaryGroups(of user: User, primary: UInt32) -> [UInt32] {
        var result = [primary]
        for group in groups where group.members.contains(user.name) && !result.contains(group.gid) {
            result.append(group.gid)
        }
        return result
    }
}
