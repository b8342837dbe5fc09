import Testing
@testable import TCPMUXProtocol
@testable import TCPMUXServices

/// SplitMix64: a small deterministic generator, so that every run draws the same
/// cases and a failure names a case that can be drawn again.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func chance(_ numerator: Int, in denominator: Int) -> Bool {
        Int.random(in: 0..<denominator, using: &self) < numerator
    }

    mutating func pick<T>(_ choices: [T]) -> T { choices.randomElement(using: &self)! }
}

// MARK: - The request parser

/// Bytes a request parser must get right: the line end's, the bad classes' and
/// plenty of name bytes, so that valid names and the cap come up too.
private let parserAlphabet: [UInt8] = [
    0x0D, 0x0D, 0x0D, 0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x20, 0x20, 0x09, 0x7F, 0x1B, 0x01,
    0x80, 0xC3, 0xA9, 0xFF, 0x21, 0x7E, 0x22, 0x5C, 0x2D, 0x2B,
] + Array("tcpmuxHELPaZ09".utf8)

/// A random client input: random bytes, or a plausible request (a name of a
/// random length around the cap included) followed by random bytes.
private func randomInput(_ random: inout SeededGenerator) -> [UInt8] {
    var input: [UInt8] = []
    if random.chance(1, in: 2) {
        let length = random.chance(1, in: 4) ? Int.random(in: (cap - 2)...(cap + 2), using: &random)
                                              : Int.random(in: 0...12, using: &random)
        input += (0..<length).map { _ in UInt8.random(in: 0x21...0x7E, using: &random) }
        if random.chance(3, in: 4) { input += [0x0D, 0x0A] }
    }
    let tail = Int.random(in: 0...(random.chance(1, in: 8) ? 300 : 24), using: &random)
    input += (0..<tail).map { _ in random.pick(parserAlphabet) }
    return input
}

/// The input cut into random chunks, empty ones included.
private func randomChunks(_ input: [UInt8], _ random: inout SeededGenerator) -> [ArraySlice<UInt8>] {
    var chunks: [ArraySlice<UInt8>] = []
    var offset = 0
    let largest = random.pick([1, 3, 16, 300])
    while offset < input.count {
        let size = random.chance(1, in: 10) ? 0 : Int.random(in: 1...largest, using: &random)
        chunks.append(input[offset..<min(offset + size, input.count)])
        offset += size
    }
    if random.chance(1, in: 4) { chunks.append([][...]) }
    return chunks
}

/// One byte at a time through `consume(_: UInt8)`: the reference.
private func bytewise(_ input: [UInt8]) -> (RequestParser.Outcome, Int) {
    var parser = RequestParser()
    for (index, byte) in input.enumerated() {
        if let outcome = parser.consume(byte) { return (outcome, index + 1) }
    }
    return (.rejected(parser.endOfInput()), input.count)
}

@Suite struct RequestParserProperties {
    static let cases = 4000

    /// However TCP splits the bytes, the parser decides the same thing after the
    /// same number of bytes, never past the first CRLF.
    @Test func decisionDoesNotDependOnTheSplit() {
        var random = SeededGenerator(seed: 0x7C9D_1078)
        var accepted = 0, rejected = 0
        for number in 0..<Self.cases {
            let input = randomInput(&random)
            let reference = bytewise(input)
            for _ in 0..<4 {
                let chunks = randomChunks(input, &random)
                let (outcome, consumed) = parse(chunks)
                #expect(outcome == reference.0 && consumed == reference.1,
                        "case \(number): \"\(escapedForLog(input))\" in chunks \(chunks.map(\.count))")
            }
            let lineEnd = zip(input.indices, input.dropFirst()).first { input[$0.0] == 0x0D && $0.1 == 0x0A }.map { $0.0 + 2 }
            #expect(reference.1 <= lineEnd ?? input.count, "case \(number): consumed past the request line")
            if case .request(let name) = reference.0 {
                accepted += 1
                #expect((1...cap).contains(name.bytes.count) && name.bytes.allSatisfy { (0x21...0x7E).contains($0) })
                #expect(Array(input.prefix(reference.1)) == name.bytes + [0x0D, 0x0A], "case \(number)")
            } else {
                rejected += 1
            }
        }
        // The generator reaches both sides.
        #expect(accepted > Self.cases / 10 && rejected > Self.cases / 10, "accepted \(accepted), rejected \(rejected)")
    }

    /// Every rejection the parser makes goes on the wire as exactly one printable
    /// `-` line: no NUL, no line break inside.
    @Test func everyRejectionIsOnePrintableLine() {
        var random = SeededGenerator(seed: 0x2D_4C_49_4E_45)
        var seen = Set<String>()
        for number in 0..<Self.cases {
            let input = randomInput(&random)
            guard case .rejected(let rejection) = parse(randomChunks(input, &random)).0 else { continue }
            seen.insert(rejection.message)
            let line = Reply.negative(rejection).bytes
            #expect(line.first == UInt8(ascii: "-"), "case \(number)")
            #expect(line.suffix(2) == [0x0D, 0x0A], "case \(number)")
            #expect(line.count > 3 && line.dropLast(2).allSatisfy { (0x20...0x7E).contains($0) }, "case \(number)")
        }
        // Every rejection the parser can make came up (all but the session's own).
        #expect(seen.count == 9, "\(seen.sorted())")
    }
}

// MARK: - The configuration round trip

/// Printable ASCII for names, heavy on the bytes the file format gives a meaning.
private let nameBytes: [UInt8] = Array("\"#\\=,/:[]'".utf8) + Array(0x21...0x7E)
/// Text for paths and arguments: spaces, tabs, quotes, backslashes, `#`, a lone
/// CR and non-ASCII, combining marks and a Prepend character among them.
private let fieldCharacters: [String] = [" ", "\t", "\"", "\\", "#", "=", "\r", "é", "e\u{301}", "\u{301}", "\u{600}", "\u{200D}", "ß", "😀", "'"]
    + "abcxyzABC0189-_./:".map(String.init)

private func randomName(_ random: inout SeededGenerator) -> ServiceName {
    let length = random.chance(1, in: 20) ? cap : Int.random(in: 1...10, using: &random)
    while true {
        let bytes = (0..<length).map { _ in random.pick(nameBytes) }
        if let name = ServiceName(String(decoding: bytes, as: UTF8.self)), name != .help { return name }
    }
}

private func randomText(_ random: inout SeededGenerator, _ lengths: ClosedRange<Int>) -> String {
    (0..<Int.random(in: lengths, using: &random)).map { _ in random.pick(fieldCharacters) }.joined()
}

/// An absolute path: `/` and a letter (a combining mark right after the slash
/// would make the first character no slash, and the path relative), then anything.
private func randomPath(_ random: inout SeededGenerator, _ lengths: ClosedRange<Int>) -> String {
    "/" + random.pick(["a", "b", "z"]) + randomText(&random, lengths)
}

private func randomAddress(_ random: inout SeededGenerator, v4: Bool) -> [UInt8] {
    if v4 { return (0..<4).map { _ in UInt8.random(in: 0...255, using: &random) } }
    // Not IPv4-mapped: that one is IPv4 itself.
    return [0x20 | UInt8.random(in: 0...0xDF, using: &random)] + (1..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
}

private func randomNetworks(_ random: inout SeededGenerator) -> [Network] {
    guard random.chance(1, in: 3) else { return [] }
    return (0..<Int.random(in: 1...3, using: &random)).map { _ in
        let v4 = random.chance(1, in: 2)
        let bytes = randomAddress(&random, v4: v4)
        let length = Int.random(in: 0...(bytes.count * 8), using: &random)
        let masked = bytes.enumerated().map { index, byte in
            let keep = min(max(length - index * 8, 0), 8)
            return keep == 8 ? byte : byte & ~(0xFF >> keep)
        }
        return Network("\(IPAddress(bytes: masked)!)/\(length)")!
    }
}

/// Credentials as the parser resolves them from `testAccounts`.
private func randomCredentials(_ random: inout SeededGenerator, root: Bool) -> Credentials? {
    if !root && random.chance(1, in: 2) { return nil }
    if random.chance(1, in: 5) {
        let gid = random.pick([UInt32(0), 50, 4243, 65534])
        return Credentials(user: "4242", uid: 4242, gid: gid, groups: [gid])
    }
    let userName = random.pick(["root", "alice", "nobody"])
    let user = testAccounts.users.first { $0.name == userName }!
    let primary = random.chance(1, in: 2) ? user.gid : random.pick([UInt32(0), 10, 50, 1000, 65534, 777])
    return Credentials(user: user.name, uid: user.uid, gid: primary,
                       groups: testAccounts.supplementaryGroups(of: user, primary: primary))
}

private func randomService(_ random: inout SeededGenerator, name: ServiceName, root: Bool) -> Service {
    let handOff: HandOff
    switch Int.random(in: 0..<3, using: &random) {
    case 0:
        handOff = .tcpmux
    case 1:
        let path = randomPath(&random, 0...12)
        let arguments = (0..<Int.random(in: 1...4, using: &random)).map { _ in randomText(&random, 0...8) }
        handOff = .exec(Program(path: path, arguments: arguments, credentials: randomCredentials(&random, root: root)))
    default:
        if random.chance(1, in: 3) {
            var path = randomPath(&random, 0...20)
            while path.utf8.count >= 108 { path.removeLast() }
            handOff = .forward(ForwardTarget(path)!)
        } else {
            let address = IPAddress(bytes: randomAddress(&random, v4: random.chance(1, in: 2)))!
            handOff = .forward(.tcp(address, port: UInt16.random(in: 1...UInt16.max, using: &random)))
        }
    }
    let acknowledgement: Acknowledgement
    if handOff != .tcpmux && random.chance(1, in: 4) {
        acknowledgement = .service
    } else if random.chance(1, in: 2) {
        acknowledgement = .server("OK")
    } else {
        let length = Int.random(in: 0...20, using: &random)
        acknowledgement = .server(String(decoding: (0..<length).map { _ in UInt8.random(in: 0x20...0x7E, using: &random) }, as: UTF8.self))
    }
    return Service(name: name, handOff: handOff, acknowledgement: acknowledgement,
                   access: Access(clients: randomNetworks(&random), locals: randomNetworks(&random)),
                   hidden: random.chance(1, in: 4))
}

private func randomTable(_ random: inout SeededGenerator, root: Bool) -> ServiceTable {
    var names: [ServiceName] = []
    for _ in 0..<Int.random(in: 0...6, using: &random) {
        let name = randomName(&random)
        if !names.contains(name) { names.append(name) }
    }
    let services = names.map { randomService(&random, name: $0, root: root) }
    let help = random.chance(1, in: 2) ? HelpPolicy()
        : HelpPolicy(enabled: random.chance(1, in: 2), access: Access(clients: randomNetworks(&random), locals: randomNetworks(&random)))
    return try! ServiceTable(services, help: help)
}

@Suite struct ConfigurationProperties {
    /// A table of random services, printed as a file (what -n prints), parses
    /// back to the same table, and prints the same file again.
    @Test(arguments: [true, false])
    func normalizedRoundTrip(root: Bool) {
        var random = SeededGenerator(seed: root ? 0xC0_4F_16 : 0xC0_4F_17)
        for number in 0..<1500 {
            let table = randomTable(&random, root: root)
            let text = Configuration.normalized(table)
            // The first failure only, the file escaped: a table prints long.
            let problem: String
            do throws(InvalidConfiguration) {
                let parsed = try Configuration.parse(text, file: "random.conf", context: context(root: root))
                if parsed != table {
                    problem = "parses to another table"
                } else if Array(Configuration.normalized(parsed).utf8) != Array(text.utf8) {
                    problem = "prints another file when normalized again"
                } else {
                    continue
                }
            } catch {
                problem = "does not parse: \(error)"
            }
            Issue.record("case \(number): the normalized file \(problem):\n\(escapedForLog(text.utf8))")
            return
        }
    }
}
