import Glibc
import Testing
@testable import TCPMUXServices

/// AddressText against glibc's inet_pton(3) and inet_ntop(3), which it replaces:
/// every string and address below must get the same answer from both.
@Suite struct NetworkTextTests {
    /// Hand-picked corners of inet_pton: leading zeros, part counts, `::` rules,
    /// group widths, IPv4 tails, stray bytes.
    static let edgeCases = [
        "", ".", ":", "::", ":::", "::::", "0", "00", "0.0.0.0", "00.0.0.0", "01.2.3.4", "1.02.3.4", "1.2.3.04",
        "1.2.3.0", "255.255.255.255", "256.0.0.0", "1.2.3.256", "1.2.3", "1.2.3.4.", ".1.2.3.4", "1..2.3", "1.2.3.4.5",
        "1.2.3.4 ", " 1.2.3.4", "+1.2.3.4", "1.2.3.-4", "0x1.2.3.4", "1.2.3.4\t", "127.1", "2130706433", "999.1.1.1",
        "1.2.3.0000", "1.2.3.00", "::1", "1::", "1:", ":1", "::1:", "1::2", "1:::2", "1::2::3", "::ffff:1.2.3.4",
        "::ffff:01.2.3.4", "::1.2.3.4", "::1.2.3", "::1.2.3.4.5", "::1.2.3.4:5", "1.2.3.4::", "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "::1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8::", "1:2:3:4::5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5::1.2.3.4",
        "1:2:3:4:5:6::1.2.3.4", "::12345", "::01234", "::0000", "::00000", "FFFF::", "ffff::fFfF", "g::", "::g",
        "2001:db8::1", "2001:DB8::1", "fe80::1%eth0", "[::1]", "::/0", "::1 ", "::1\u{7f}", "1.2.3.4/8", "::a.b.c.d",
        "::ffff:255.255.255.255", "::ffff:256.1.1.1", "::0.0.0.0", "::1.2.3.4.", ":::1.2.3.4", "::1234.1.1.1",
        "::123.1.1.1", "::ffff:1.2.3.4:", "1:2:3:4:5:6:7:8.", "::.1.2.3", "::1..2.3", "é", "1.2.3.４",
    ]

    /// Bytes that make up addresses, with a few that never do, so random strings
    /// reach deep into both parsers.
    static let alphabet = Array("0123456789abcdefABCDEF::::....0012fg /x".utf8)

    /// Strings in three families, all from a fixed seed: random bytes of the
    /// address alphabet, glibc's own text of random addresses, and that text
    /// with one byte deleted, replaced or inserted.
    static func strings(count: Int) -> [[UInt8]] {
        var random = SeededGenerator(seed: 0x7C9_1078)
        var strings: [[UInt8]] = []
        for round in 0..<count {
            switch round % 3 {
            case 0:
                let length = Int(random.next() % 46)
                strings.append((0..<length).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
            default:
                var text = glibcText(address(&random))
                if round % 3 == 2 {
                    let position = Int(random.next() % UInt64(text.count + 1))
                    let byte = alphabet[Int(random.next() % UInt64(alphabet.count))]
                    switch random.next() % 3 {
                    case 0 where position < text.count: text.remove(at: position)
                    case 1 where position < text.count: text[position] = byte
                    default: text.insert(byte, at: position)
                    }
                }
                strings.append(text)
            }
        }
        return strings
    }

    /// 4 or 16 bytes, with zero and 0xffff groups common enough that every
    /// `::` placement and both IPv4 forms (`::a.b.c.d`, `::ffff:a.b.c.d`) occur.
    static func address(_ random: inout SeededGenerator) -> [UInt8] {
        if random.next() % 4 == 0 { return (0..<4).map { _ in UInt8(truncatingIfNeeded: random.next()) } }
        return (0..<8).flatMap { _ -> [UInt8] in
            switch random.next() % 8 {
            case 0, 1, 2, 3: [0, 0]
            case 4: [0xFF, 0xFF]
            case 5: [0, UInt8(truncatingIfNeeded: random.next() % 16)]
            default: [UInt8(truncatingIfNeeded: random.next()), UInt8(truncatingIfNeeded: random.next())]
            }
        }
    }

    /// The first argument as glibc's inet_pton reads it in that family, or nil.
    static func glibcBytes(_ family: Int32, _ text: [UInt8]) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 16)
        let found = (text + [0]).withUnsafeBufferPointer { string in
            string.withMemoryRebound(to: CChar.self) { inet_pton(family, $0.baseAddress, &buffer) }
        }
        return found == 1 ? Array(buffer[..<(family == AF_INET ? 4 : 16)]) : nil
    }

    static func glibcText(_ bytes: [UInt8]) -> [UInt8] {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let written = bytes.withUnsafeBytes {
            inet_ntop(bytes.count == 4 ? AF_INET : AF_INET6, $0.baseAddress, &text, socklen_t(text.count))
        }
        precondition(written != nil)
        return text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    }

    /// Each parser accepts exactly the strings glibc accepts, with the same bytes.
    @Test func readsAsInetPton() {
        let strings = Self.edgeCases.map { Array($0.utf8) } + Self.strings(count: 30_000)
        var accepted = (ipv4: 0, ipv6: 0)
        for text in strings {
            let ipv4 = AddressText.ipv4(text[...]), ipv6 = AddressText.ipv6(text[...])
            #expect(ipv4 == Self.glibcBytes(AF_INET, text), "AF_INET \(String(decoding: text, as: UTF8.self))")
            #expect(ipv6 == Self.glibcBytes(AF_INET6, text), "AF_INET6 \(String(decoding: text, as: UTF8.self))")
            if ipv4 != nil { accepted.ipv4 += 1 }
            if ipv6 != nil { accepted.ipv6 += 1 }
        }
        // The corpus must exercise both outcomes in both families to mean anything.
        #expect(accepted.ipv4 > 1_000 && accepted.ipv6 > 5_000 && strings.count - accepted.ipv6 > 5_000)
    }

    /// The formatter writes what glibc writes for any address, and the parser
    /// reads that text back to the same bytes.
    @Test func writesAsInetNtop() {
        var random = SeededGenerator(seed: 0x7C9_1078)
        var addresses: [[UInt8]] = [[0, 0, 0, 0], [255, 255, 255, 255], [UInt8](repeating: 0, count: 16), [UInt8](repeating: 0xFF, count: 16)]
        // Every pattern of zero and nonzero groups, with 0xffff in group 5.
        for mask in 0..<512 {
            addresses.append((0..<8).flatMap { group -> [UInt8] in
                mask & (1 << group) == 0 ? [0, 0] : group == 5 && mask & 256 != 0 ? [0xFF, 0xFF] : [0x0A, UInt8(group)]
            })
        }
        for _ in 0..<30_000 { addresses.append(Self.address(&random)) }
        for bytes in addresses {
            let text = bytes.count == 4 ? AddressText.text(ipv4: bytes[...]) : AddressText.text(ipv6: bytes)
            #expect(text == Self.glibcText(bytes), "\(bytes)")
            let back = bytes.count == 4 ? AddressText.ipv4(text[...]) : AddressText.ipv6(text[...])
            #expect(back == bytes, "\(bytes)")
        }
    }

    /// IPAddress as a whole behaves as it did on inet_pton and inet_ntop: IPv4
    /// first, then IPv6, mapped addresses folded to IPv4, and the same text out.
    @Test func addressesAsBefore() {
        for text in Self.edgeCases.map({ Array($0.utf8) }) + Self.strings(count: 6_000) {
            let glibc = Self.glibcBytes(AF_INET, text) ?? Self.glibcBytes(AF_INET6, text)
            let address = IPAddress(String(decoding: text, as: UTF8.self))
            #expect(address?.bytes == glibc.flatMap { IPAddress(bytes: $0)?.bytes })
            if let address { #expect(Array(address.description.utf8) == Self.glibcText(address.bytes)) }
        }
        #expect(IPAddress("::ffff:192.0.2.1")?.description == "192.0.2.1")
        #expect(IPAddress("::192.0.2.1")?.description == "::192.0.2.1")
        #expect(IPAddress("2001:db8:0:0:1:0:0:1")?.description == "2001:db8::1:0:0:1", "first of equal runs")
        #expect(IPAddress("1:0:2:3:4:5:6:7")?.description == "1:0:2:3:4:5:6:7", "one zero group stays")
    }
}
