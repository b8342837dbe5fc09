import Foundation
import Testing
import TCPMUXProtocol
@testable import TCPMUXServices

/// Fixed accounts, so the golden files do not depend on the machine.
let testAccounts = Accounts(
    passwd: """
    root:x:0:0:root:/root:/bin/sh
    # a comment
    +nisuser::::::
    alice:x:1000:1000:Alice:/home/alice:/bin/sh
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
    broken:x:notanumber:1
    """,
    group: """
    root:x:0:
    staff:x:50:alice,bob
    wheel:x:10:bob,alice
    alice:x:1000:
    nogroup:x:65534:
    """)

func context(root: Bool = true) -> Configuration.Context {
    Configuration.Context(runningAsRoot: root) { testAccounts }
}

let configurations = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Configurations")

func goldenFiles(_ folder: String) -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: configurations.appendingPathComponent(folder).path)) ?? []
    return names.filter { $0.hasSuffix(".conf") }.sorted()
}

/// Compares with the golden file beside `file` (`.ok` or `.err`); with
/// GOLDEN_UPDATE=1 in the environment, writes it instead.
func expectGolden(_ actual: String, _ folder: String, _ file: String, _ suffix: String) throws {
    let golden = configurations.appendingPathComponent(folder).appendingPathComponent(file.replacingOccurrences(of: ".conf", with: suffix))
    if ProcessInfo.processInfo.environment["GOLDEN_UPDATE"] == "1" {
        try actual.write(to: golden, atomically: true, encoding: .utf8)
    }
    let expected = try String(contentsOf: golden, encoding: .utf8)
    #expect(actual == expected, "\(folder)/\(file)")
}

@Suite struct ConfigurationGoldenTests {
    @Test func goldenFilesExist() {
        #expect(goldenFiles("valid").count >= 3)
        #expect(goldenFiles("invalid").count >= 3)
    }

    /// A valid file's normalized table (what -n prints), which must itself parse
    /// back to the same table.
    @Test(arguments: goldenFiles("valid"))
    func valid(_ file: String) throws {
        let text = try String(contentsOf: configurations.appendingPathComponent("valid/\(file)"), encoding: .utf8)
        let table = try Configuration.parse(text, file: file, context: context())
        let normalized = Configuration.normalized(table)
        try expectGolden(normalized, "valid", file, ".ok")
        #expect(try Configuration.parse(normalized, file: "normalized", context: context()) == table)
    }

    /// An invalid file's errors, every one, as `FILE:LINE: message`.
    @Test(arguments: goldenFiles("invalid"))
    func invalid(_ file: String) throws {
        // Bytes: some are not valid UTF-8 on purpose.
        let bytes = [UInt8](try Data(contentsOf: configurations.appendingPathComponent("invalid/\(file)")))
        do throws(InvalidConfiguration) {
            _ = try Configuration.parse(bytes, file: file, context: context())
            Issue.record("\(file) parsed")
        } catch {
            let lines = error.errors.map { "\($0)\n" }.joined()
            try expectGolden(lines, "invalid", file, ".err")
            // At most one error per line: parsing a line stops at its first mistake.
            #expect(Set(error.errors.map(\.line)).count == error.errors.count)
        }
    }
}

@Suite struct ConfigurationTests {
    func parse(_ text: String, root: Bool = true) throws(InvalidConfiguration) -> ServiceTable {
        try Configuration.parse(text, file: "t.conf", context: context(root: root))
    }

    func errors(_ text: String, root: Bool = true) -> [String] {
        do throws(InvalidConfiguration) {
            _ = try parse(text, root: root)
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    /// A root server never runs a service as root by accident (CVE-2013-4342):
    /// without user=, nobody.
    @Test func rootServerDefaultsToNobody() throws {
        let table = try parse("echo exec /bin/cat cat")
        #expect(table.services[0].handOff == .exec(Program(path: "/bin/cat", arguments: ["cat"],
                credentials: Credentials(user: "nobody", uid: 65534, gid: 65534, groups: [65534]))))
    }

    /// A server that is not root runs services as itself; group= alone means nothing then.
    @Test func nonRootServerRunsAsItself() throws {
        let table = try parse("echo exec /bin/cat cat", root: false)
        #expect(table.services[0].handOff == .exec(Program(path: "/bin/cat", arguments: ["cat"], credentials: nil)))
        #expect(errors("echo group=staff exec /bin/cat", root: false) == ["t.conf:1: group= needs user="])
    }

    /// Supplementary groups as initgroups(3) would set them.
    @Test func supplementaryGroups() throws {
        let table = try parse("id user=alice exec /usr/bin/id")
        guard case .exec(let program) = table.services[0].handOff else { Issue.record("not exec"); return }
        #expect(program.credentials == Credentials(user: "alice", uid: 1000, gid: 1000, groups: [1000, 50, 10]))
    }

    /// The account files are read only when a line needs them.
    @Test func accountsReadOnlyWhenNeeded() throws {
        nonisolated(unsafe) var reads = 0
        let counting = Configuration.Context(runningAsRoot: true) { reads += 1; return testAccounts }
        _ = try Configuration.parse("tcpmux tcpmux\nweb forward 127.0.0.1:80", file: "t", context: counting)
        #expect(reads == 0)
        _ = try Configuration.parse("a exec /bin/a\nb exec /bin/b", file: "t", context: counting)
        #expect(reads == 1)
    }

    /// Ids in decimal digits only, and no NUL in what execve takes as C strings.
    @Test func signsAndNULsAreRefused() {
        #expect(errors("a user=+4242 group=1 exec /bin/a") == ["t.conf:1: unknown user \"+4242\""])
        #expect(errors("a user=alice group=+50 exec /bin/a") == ["t.conf:1: unknown group \"+50\""])
        #expect(errors("a exec /bin/a \"x\u{0}y\"") == ["t.conf:1: exec path or argument holds a NUL byte"])
        #expect(errors("a allow=10.0.0.1\u{0}junk tcpmux") == ["t.conf:1: bad address or network \"10.0.0.1\\x00junk\""])
    }

    @Test func namesCollideWithoutRegardToCase() {
        #expect(errors("Echo tcpmux\necho tcpmux") == ["t.conf:2: duplicate service name \"echo\" (first at line 1)"])
    }

    @Test func windowsLineEndsAreWhiteSpace() throws {
        #expect(try parse("tcpmux tcpmux\r\n").services.count == 1)
    }

    @Test func fields() throws {
        #expect(try TCPMUXServices.fields(of: #"a "b c" d"e f"g "" # x"#) == ["a", "b c", "de fg", ""])
        #expect(try TCPMUXServices.fields(of: #""\"\\" x#y"#) == [#""\"#, "x#y"])
        #expect(try TCPMUXServices.fields(of: "  # all comment") == [])
    }

    @Test func quotingRoundTrips() throws {
        for field in ["plain", "two words", "", "#hash", "a\"b", "back\\slash", "tab\there"] {
            #expect(try TCPMUXServices.fields(of: Substring(Configuration.quoted(field))) == [field])
        }
    }

    /// Found by fuzz/run (config): the quote that -n put after `c` U+0600 (a
    /// prepended character, which joins what follows it) or before U+0301 (a
    /// combining mark, which joins what precedes it) was read as part of that
    /// character, so the normalized file did not parse: "unterminated quote".
    /// Fields are now read, and quoted, by Unicode scalar.
    @Test func quotesNextToJoiningCharactersRoundTrip() throws {
        for field in ["c\u{600}", "\u{301}abc", "a\u{301}", "\u{600}", "\u{200D}x", "\u{20E3}", "e\u{301}\"\u{301}\\\u{301}"] {
            let parsed = try TCPMUXServices.fields(of: Substring(Configuration.quoted(field)))
            #expect(parsed.map { Array($0.unicodeScalars) } == [Array(field.unicodeScalars)], "\(escapedForLog(field.utf8))")
        }
        for line in ["echo user=alice exec /bin/cat c\u{600}", "echo exec /bin/cat\t\u{301}abc"] {
            let table = try parse(line)
            let normalized = Configuration.normalized(table)
            #expect(try parse(normalized) == table, "\(escapedForLog(normalized.utf8))")
        }
        // Syntax is syntax whatever follows it: a quote before a combining mark
        // still opens a quoted field, and space still separates.
        #expect(try TCPMUXServices.fields(of: "a \"\u{301}b c\" \u{301}d") == ["a", "\u{301}b c", "\u{301}d"])
    }

    /// Found by the round-trip property test (PropertyTests.swift): -n printed
    /// names unquoted, so a name holding `"` did not parse back (unterminated
    /// quote) and one starting with `#` became a comment, the service gone.
    @Test func namesNeedingQuotesRoundTrip() throws {
        let table = try parse(#"""
            "a\"b" tcpmux
            "#hash" tcpmux
            "\"" tcpmux
            back\slash tcpmux
            x#y tcpmux
            """#)
        #expect(table.services.map(\.name.description) == [#"a"b"#, "#hash", #"""#, #"back\slash"#, "x#y"])
        let normalized = Configuration.normalized(table)
        #expect(normalized == #"""
            "a\"b" tcpmux
            "#hash" tcpmux
            "\"" tcpmux
            "back\\slash" tcpmux
            x#y tcpmux

            """#)
        #expect(try parse(normalized) == table)
    }
}

/// Strict text (issue 9, item 12): what the file says is what runs, byte for byte.
@Suite struct StrictTextTests {
    func errors(_ bytes: [UInt8]) -> [String] {
        do throws(InvalidConfiguration) {
            _ = try Configuration.parse(bytes, file: "t.conf", context: context())
            return []
        } catch {
            return error.errors.map(\.description)
        }
    }

    /// Latin-1 `caf\xe9` was decoded with a replacement character, so the
    /// service ran `/tmp/caf\u{FFFD}`, another path: invalid UTF-8 is refused, with its line.
    @Test func invalidUTF8IsRefused() {
        #expect(errors(Array("ok tcpmux\ncafe exec /tmp/caf".utf8) + [0xE9] + Array("\n".utf8)) == ["t.conf:2: not valid UTF-8"])
        // Overlong and surrogate encodings too, and even in a comment.
        #expect(errors(Array("a exec /bin/".utf8) + [0xC0, 0xAF]) == ["t.conf:1: not valid UTF-8"])
        #expect(errors(Array("a exec /bin/".utf8) + [0xED, 0xA0, 0x80]) == ["t.conf:1: not valid UTF-8"])
        #expect(errors(Array("# \u{1}".utf8) + [0xFF]) == ["t.conf:1: not valid UTF-8"])
        // Valid UTF-8 beyond ASCII is still a path.
        #expect(errors(Array("cafe exec /tmp/café".utf8)) == [])
    }

    /// `"a\rb"` silently became `arb`: only `\"` and `\\` are escapes.
    @Test(arguments: [#""a\rb""#, #""a\nb""#, #""a\tb""#, #""a\ b""#, #""\x41""#, #""\0""#])
    func unknownEscapesAreRefused(_ field: String) {
        let problems = errors(Array("a exec /bin/echo \(field)".utf8))
        #expect(problems.count == 1 && problems[0].hasPrefix("t.conf:1: unknown escape in quotes: backslash before "), "\(problems)")
    }

    @Test func knownEscapesStillWork() throws {
        #expect(try TCPMUXServices.fields(of: #""a\"b" "c\\d""#) == [#"a"b"#, #"c\d"#])
    }

    /// sustrik's libmill client reads the reply into 256 bytes: `+`, at most
    /// 253 bytes of text, CRLF.
    @Test func messageFitsTheReplyBuffer() throws {
        let longest = String(repeating: "m", count: 253)
        let table = try Configuration.parse("a message=\(longest) tcpmux", file: "t.conf", context: context())
        #expect(table.services[0].acceptance?.bytes.count == 256)
        #expect(errors(Array("a message=\(longest)m tcpmux".utf8))
                == ["t.conf:1: message= longer than 253 bytes: the reply line, + and CRLF included, would exceed 256 bytes"])
        // The bare `+` (message="") that nanomsg's tcpmux:// transport wants.
        let bare = try Configuration.parse(#"a message="" tcpmux"#, file: "t.conf", context: context())
        #expect(bare.services[0].acceptance?.bytes == Array("+\r\n".utf8))
    }
}

/// Issue 9, item 13: a person who typed a name into plain nc, ncat, socat or
/// curl telnet:// sent a bare LF; the reply tells them how to send CRLF, in
/// one printable line that fits a 256-byte reply buffer.
@Suite struct BareLineFeedReplyTests {
    @Test func replySaysWhatToDo() {
        let bytes = Reply.negative(.bareLineFeed).bytes
        #expect(bytes == Array("-Request line must end with CRLF, not a bare LF (use telnet, nc -C, ncat -C or socat's crlf option)\r\n".utf8))
        #expect(bytes.count <= 256)
        #expect(bytes.dropLast(2).allSatisfy { (0x20...0x7E).contains($0) })
    }
}

/// Loading and lookup in O(n log n) (issue 9, item 11): the duplicate check and
/// the lookup were scans, quadratic over a file (26 s of CPU for 75,000 lines).
@Suite struct LargeTableTests {
    let count = 200_000

    func text(duplicateAtEnd: Bool = false) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count * 16)
        for index in 0..<count { bytes += Array("s\(index) tcpmux\n".utf8) }
        if duplicateAtEnd { bytes += Array("S77 tcpmux\n".utf8) }
        return bytes
    }

    /// Every name found, the absent not, across the whole key order (prefixes,
    /// case). The bound is generous (some 100 times what it takes in a debug
    /// build) but far below what the quadratic scan took: it fails on that, never on a busy machine.
    @Test(.timeLimit(.minutes(1)))
    func largeTableLoadsAndLooksUp() throws {
        let started = Date()
        let table = try Configuration.parse(text(), file: "large.conf", context: context())
        #expect(table.services.count == count)
        for index in [0, 1, 9, 10, 99, 12345, count / 2, count - 1] {
            #expect(table.service(named: ServiceName("S\(index)")!)?.name.description == "s\(index)")
        }
        for absent in ["s", "s\(count)", "t0", "r9", "s-1", "s00"] {
            #expect(table.service(named: ServiceName(absent)!) == nil, "\(absent)")
        }
        #expect(Date().timeIntervalSince(started) < 60)
    }

    /// A duplicate far down a large file is found, with its line and the first's,
    /// in line order among the other errors.
    @Test(.timeLimit(.minutes(1)))
    func duplicateInALargeTable() {
        let started = Date()
        var bytes = text(duplicateAtEnd: true)
        bytes += Array("bad frobnicate tcpmux\n".utf8)
        do throws(InvalidConfiguration) {
            _ = try Configuration.parse(bytes, file: "large.conf", context: context())
            Issue.record("parsed")
        } catch {
            #expect(error.errors.map(\.description) == [
                "large.conf:\(count + 1): duplicate service name \"S77\" (first at line 78)",
                "large.conf:\(count + 2): unknown keyword \"frobnicate\"",
            ])
        }
        #expect(Date().timeIntervalSince(started) < 60)
    }

    /// Lookup by key on a small table, as every connection does.
    @Test func lookupInSmallTables() throws {
        let table = try Configuration.parse("b tcpmux\nA tcpmux\nab tcpmux\na-b tcpmux", file: "t", context: context())
        for name in ["a", "B", "AB", "a-b"] { #expect(table.service(named: ServiceName(name)!) != nil, "\(name)") }
        for name in ["c", "aa", "a-", "-"] { #expect(table.service(named: ServiceName(name)!) == nil, "\(name)") }
        #expect(ServiceTable.builtIn.service(named: ServiceName("TCPMUX")!) != nil)
        let empty = try Configuration.parse("", file: "t", context: context())
        #expect(empty.service(named: ServiceName("a")!) == nil)
    }

    /// ServiceTable still refuses what Configuration refuses, typed, never a trap.
    @Test func tableRefusesDuplicatesAndHELP() {
        #expect(throws: ServiceTable.Error.duplicateName(ServiceName("x")!)) {
            try ServiceTable([Service(name: ServiceName("x")!, handOff: .tcpmux), Service(name: ServiceName("y")!, handOff: .tcpmux),
                              Service(name: ServiceName("X")!, handOff: .tcpmux)])
        }
        #expect(throws: ServiceTable.Error.reservedName(.help)) {
            try ServiceTable([Service(name: ServiceName("help")!, handOff: .tcpmux)])
        }
    }
}

@Suite struct NetworkTests {
    @Test func addresses() {
        #expect(IPAddress("127.0.0.1")?.bytes == [127, 0, 0, 1])
        #expect(IPAddress("::ffff:10.1.2.3")?.bytes == [10, 1, 2, 3], "IPv4-mapped is IPv4")
        #expect(IPAddress("::1")?.bytes.count == 16)
        #expect(IPAddress("localhost") == nil, "numeric only: no resolver")
        #expect(IPAddress("1.2.3") == nil)
        #expect(IPAddress("2001:db8::1")?.description == "2001:db8::1")
    }

    @Test(arguments: [
        ("10.0.0.0/8", "10.255.1.2", true), ("10.0.0.0/8", "11.0.0.0", false),
        ("0.0.0.0/0", "192.0.2.1", true), ("0.0.0.0/0", "::1", false),
        ("192.0.2.7", "192.0.2.7", true), ("192.0.2.7", "192.0.2.8", false),
        ("192.0.2.128/25", "192.0.2.200", true), ("192.0.2.128/25", "192.0.2.100", false),
        ("2001:db8::/32", "2001:db8:ffff::1", true), ("2001:db8::/32", "2001:db9::1", false),
        ("::/0", "::1", true), ("::/0", "127.0.0.1", false),
        ("10.0.0.0/8", "::ffff:10.9.9.9", true),
        ("::ffff:10.0.0.0/104", "10.1.1.1", true),
        ("fe80::/10", "febf::1", true), ("fe80::/10", "fec0::1", false),
    ])
    func contains(_ network: String, _ address: String, _ inside: Bool) throws {
        let block = try #require(Network(network))
        #expect(block.contains(try #require(IPAddress(address))) == inside)
    }

    /// Including what the fuzzer found slipping through: a NUL ends inet_pton's
    /// C string early, and Swift's integers take a sign.
    @Test(arguments: ["10.0.0.1/8", "10.0.0.0/33", "::1/129", "10.0.0.0/", "/8", "10.0.0.0/-1", "10.0.0.0/+8", "example.com",
                      "::ffff:10.0.0.0/95", "10.0.0.1\u{0}junk", "10.0.0.0\u{0}/8", " 10.0.0.1", "10.0.0.1/８"])
    func invalidNetworks(_ text: String) {
        #expect(Network(text) == nil)
    }

    @Test(arguments: [
        ("127.0.0.1:80", true), ("[::1]:8080", true), ("/run/a.sock", true),
        ("127.0.0.1:0", false), ("127.0.0.1:65536", false), ("localhost:80", false), ("[127.0.0.1]:80", false),
        ("::1:80", false), ("127.0.0.1", false), ("relative.sock", false),
        ("127.0.0.1:+80", false), ("127.0.0.1\u{0}x:80", false), ("127.0.0.1: 80", false),
        ("/" + String(repeating: "a", count: 107), false), ("/" + String(repeating: "a", count: 106), true),
    ])
    func forwardTargets(_ text: String, _ valid: Bool) {
        #expect((ForwardTarget(text) != nil) == valid)
        if let target = ForwardTarget(text) { #expect(target.description == text) }
    }
}

@Suite struct AccessTests {
    let table = try! Configuration.parse("""
        open tcpmux
        inside allow=10.0.0.0/8 tcpmux
        front local=192.0.2.1 tcpmux
        secret hidden tcpmux
        """, file: "t", context: context())

    func endpoints(_ client: String, _ local: String) -> Endpoints {
        Endpoints(client: IPAddress(client), local: IPAddress(local))
    }

    /// HELP shows only what this client may use, and never a hidden service.
    @Test func helpListsWhatTheClientMayUse() {
        #expect(table.helpList(for: endpoints("10.1.1.1", "192.0.2.1")).map(\.description) == ["open", "inside", "front"])
        #expect(table.helpList(for: endpoints("203.0.113.9", "192.0.2.1")).map(\.description) == ["open", "front"])
        #expect(table.helpList(for: endpoints("10.1.1.1", "198.51.100.1")).map(\.description) == ["open", "inside"])
        #expect(table.helpList(for: Endpoints(client: nil, local: nil)).map(\.description) == ["open"],
                "without addresses (a pipe), only unrestricted services")
    }

    /// A refused client gets exactly the unknown-service line.
    @Test func refusalLooksLikeUnknown() {
        var outside = Session(table: table, endpoints: endpoints("203.0.113.9", "192.0.2.1"))
        let refused = outside.decide(.request(ServiceName("inside")!))
        let unknown = outside.decide(.request(ServiceName("nosuch")!))
        #expect(refused.reply == unknown.reply)
        #expect(refused.reply == .negative(.unknownService))
        var inside = Session(table: table, endpoints: endpoints("10.0.0.5", "192.0.2.1"))
        #expect(inside.decide(.request(ServiceName("inside")!)).reply == .positive("OK"))
        #expect(inside.decide(.request(ServiceName("secret")!)).reply == .positive("OK"), "hidden, not refused")
    }

    @Test func helpPolicy() throws {
        let off = try Configuration.parse("a tcpmux\nHELP off", file: "t", context: context())
        var session = Session(table: off)
        #expect(session.decide(.request(.help)).reply == .negative(.unknownService))
        let limited = try Configuration.parse("a tcpmux\nHELP allow=10.0.0.0/8", file: "t", context: context())
        var outside = Session(table: limited, endpoints: endpoints("192.0.2.9", "192.0.2.1"))
        #expect(outside.decide(.request(.help)).reply == .negative(.unknownService))
        var inside = Session(table: limited, endpoints: endpoints("10.0.0.9", "192.0.2.1"))
        #expect(inside.decide(.request(.help)).reply == .serviceList([ServiceName("a")!]))
    }

    /// Without a table (the file failed), every request is refused: fail closed.
    @Test func noTableFailsClosed() {
        var session = Session(table: nil)
        #expect(session.decide(.request(.help)).reply == .negative(.tableUnavailable))
        #expect(session.decide(.request(ServiceName("tcpmux")!)).reply == .negative(.tableUnavailable))
    }

    /// Exec and forward wait for the hand-off to be ready before any `+`: the
    /// session names the hand-off and the `+` to write once it is, and the `-`
    /// line for one that cannot be prepared.
    @Test func handOffHasNoReplyYet() throws {
        let table = try Configuration.parse("e exec /bin/cat\nf ack=service forward 127.0.0.1:1", file: "t", context: context())
        var session = Session(table: table)
        let exec = session.decide(.request(ServiceName("E")!))
        #expect(exec.reply == nil)
        guard case .exec(let program) = table.services[0].handOff else { Issue.record("not exec"); return }
        #expect(exec.next == .exec(program, acceptance: .positive("OK"), service: table.services[0]))
        let forward = session.decide(.request(ServiceName("f")!))
        #expect(forward.reply == nil)
        #expect(forward.next == .forward(.tcp(IPAddress("127.0.0.1")!, port: 1), acceptance: nil, service: table.services[1]),
                "ack=service: the service writes its own +")
        #expect(Session.failedHandOff == .negative(.handOffFailed))
    }
}
