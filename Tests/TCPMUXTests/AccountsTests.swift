import Testing
@testable import TCPMUXServices

/// /etc/passwd and /etc/group as Accounts reads them. ASCII files without CR are
/// cut at bytes; any other text is split by Character: both must agree.
@Suite struct AccountsTests {
    let passwd = """
        root:x:0:0:root:/root:/bin/bash
        # a comment
        +nis::::::
        -excluded::::::

        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
        short:x:5
        fourfields:x:7:8
        baduid:x:abc:1::/:/bin/sh
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
        """
    let group = """
        root:x:0:
        adm:x:4:syslog,nobody
        nogroup:x:65534:
        extra:x:9:a,b:more:fields
        """

    @Test func users() {
        let accounts = Accounts(passwd: passwd, group: group)
        #expect(accounts.users == [
            .init(name: "root", uid: 0, gid: 0), .init(name: "daemon", uid: 1, gid: 1),
            .init(name: "fourfields", uid: 7, gid: 8), .init(name: "nobody", uid: 65534, gid: 65534),
        ])
        #expect(accounts.user("nobody")?.uid == 65534)
        #expect(accounts.user("1")?.name == "daemon")
        #expect(accounts.user("nis") == nil)
    }

    @Test func groups() {
        let accounts = Accounts(passwd: passwd, group: group)
        #expect(accounts.groups == [
            .init(name: "root", gid: 0, members: []), .init(name: "adm", gid: 4, members: ["syslog", "nobody"]),
            .init(name: "nogroup", gid: 65534, members: []), .init(name: "extra", gid: 9, members: ["a", "b"]),
        ])
        #expect(accounts.supplementaryGroups(of: accounts.user("nobody")!, primary: 65534) == [65534, 4])
    }

    /// CR LF is one Character: a CRLF file is not split into lines, as before
    /// the byte-wise reading existed; non-ASCII names are kept whole.
    @Test func characterSplitForOtherText() {
        #expect(Accounts(passwd: "a:x:1:1\r\nb:x:2:2\r\n", group: "").users == [])
        #expect(Accounts(passwd: "a:x:1:1\nb:x:2:2\n", group: "").users.map(\.name) == ["a", "b"])
        #expect(Accounts(passwd: "é:x:1:1\nb:x:2:2\r", group: "").users.map(\.name) == ["é"])
    }
}
