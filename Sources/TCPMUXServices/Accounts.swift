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
        var users: [User] = []
        Accounts.forEachRecord(passwd) { name, _, uid, gid in
            guard let uid = UInt32(uid), let gid = UInt32(gid) else { return }
            users.append(User(name: String(name), uid: uid, gid: gid))
        }
        var groups: [Group] = []
        Accounts.forEachRecord(group) { name, _, gid, members in
            guard let gid = UInt32(gid) else { return }
            groups.append(Group(name: String(name), gid: gid, members: members.split(separator: ",").map(String.init)))
        }
        self.users = users
        self.groups = groups
    }

    /// The first four colon-separated fields of each line that has at least
    /// four; comments, blank lines and NIS `+`/`-` entries are skipped.
    private static func forEachRecord(_ text: String, _ body: (Substring, Substring, Substring, Substring) -> Void) {
        // A root server with exec services reads both files on every connection.
        // In ASCII without CR every byte is one Character, so cutting at bytes
        // gives the same lines and fields as splitting Characters, for a small
        // fraction of the cost; any other text is split by Character.
        let utf8 = text.utf8
        let cut: Bool? = utf8.withContiguousStorageIfAvailable { bytes in
            guard !bytes.contains(where: { $0 >= 0x80 || $0 == UInt8(ascii: "\r") }) else { return false }
            func field(_ from: Int, _ to: Int) -> Substring {
                Substring(utf8[utf8.index(utf8.startIndex, offsetBy: from)..<utf8.index(utf8.startIndex, offsetBy: to)])
            }
            var lineStart = 0
            while lineStart < bytes.count {
                var lineEnd = lineStart
                while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
                defer { lineStart = lineEnd + 1 }
                let first = bytes[lineStart]
                guard lineEnd > lineStart, first != UInt8(ascii: "#"), first != UInt8(ascii: "+"), first != UInt8(ascii: "-") else { continue }
                // The first four colons; the fourth field ends at the fourth or at the line's end.
                var colons = (lineEnd, lineEnd, lineEnd, lineEnd), found = 0
                var index = lineStart
                while index < lineEnd && found < 4 {
                    if bytes[index] == UInt8(ascii: ":") {
                        switch found {
                        case 0: colons.0 = index
                        case 1: colons.1 = index
                        case 2: colons.2 = index
                        default: colons.3 = index
                        }
                        found += 1
                    }
                    index += 1
                }
                guard found >= 3 else { continue }
                body(field(lineStart, colons.0), field(colons.0 + 1, colons.1), field(colons.1 + 1, colons.2), field(colons.2 + 1, colons.3))
            }
            return true
        }
        guard cut != true else { return }
        for line in text.split(separator: "\n") {
            guard let first = line.first, first != "#", first != "+", first != "-" else { continue }
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            if fields.count >= 4 { body(fields[0], fields[1], fields[2], fields[3]) }
        }
    }

    /// A user of the file, by name or by number.
    public func user(_ text: String) -> User? {
        users.first { $0.name == text } ?? decimal(text[...], as: UInt32.self).flatMap { uid in users.first { $0.uid == uid } }
    }

    public func group(_ text: String) -> UInt32? {
        if let found = groups.first(where: { $0.name == text }) { return found.gid }
        return decimal(text[...], as: UInt32.self)
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
        guard let uid = decimal(userText[...], as: UInt32.self) else { return .failure(AccountError("unknown user \"\(escapedForLog(userText.utf8))\"")) }
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
