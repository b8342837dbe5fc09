// The PROXY protocol encoder against byte strings written from HAProxy's
// doc/proxy-protocol.txt: section 2.1's example line (192.168.0.1:56324 to
// 192.168.0.11:443) and the same connection in section 2.2's binary layout.
import Testing
import TCPMUXProtocol
@testable import TCPMUXServices

private func endpoint(_ text: String, _ port: UInt16) -> ProxyHeader.Endpoint {
    ProxyHeader.Endpoint(address: IPAddress(text)!, port: port)
}

/// ::ffff:a.b.c.d from its 16 bytes, as getpeername reports an IPv4 client on a
/// dual-stack socket.
private func mapped(_ ipv4: [UInt8], _ port: UInt16) -> ProxyHeader.Endpoint {
    ProxyHeader.Endpoint(address: IPAddress(bytes: [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + ipv4)!, port: port)
}

/// Hex text (spaces ignored) as bytes.
private func hex(_ text: String) -> [UInt8] {
    let digits = Array(text.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

private let signature = "0D0A0D0A 000D0A51 5549540A"

struct ProxyHeaderCase: CustomTestStringConvertible, Sendable {
    let label: String
    let version: ProxyHeader.Version
    let source: ProxyHeader.Endpoint?
    let destination: ProxyHeader.Endpoint?
    let service: String
    let expected: [UInt8]
    var testDescription: String { label }
}

private let specSource = endpoint("192.168.0.1", 56324)
private let specDestination = endpoint("192.168.0.11", 443)

let proxyHeaderCases: [ProxyHeaderCase] = [
    // Section 2.1's example, byte for byte.
    ProxyHeaderCase(label: "v1 TCP4 (the spec's example)", version: .v1, source: specSource, destination: specDestination,
                    service: "web", expected: Array("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".utf8)),
    ProxyHeaderCase(label: "v1 TCP6", version: .v1, source: endpoint("2001:db8::1", 56324), destination: endpoint("2001:db8::11", 443),
                    service: "web", expected: Array("PROXY TCP6 2001:db8::1 2001:db8::11 56324 443\r\n".utf8)),
    // An IPv4 client of a dual-stack socket is TCP4 with its IPv4 addresses.
    ProxyHeaderCase(label: "v1 IPv4-mapped is TCP4", version: .v1, source: mapped([192, 168, 0, 1], 56324),
                    destination: mapped([192, 168, 0, 11], 443), service: "web",
                    expected: Array("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".utf8)),
    ProxyHeaderCase(label: "v1 not a socket", version: .v1, source: nil, destination: nil, service: "web",
                    expected: Array("PROXY UNKNOWN\r\n".utf8)),
    // 0x21 PROXY, 0x11 TCP over IPv4, length 12 + 6 (addresses, ports, ALPN "web").
    ProxyHeaderCase(label: "v2 TCP4 with ALPN", version: .v2, source: specSource, destination: specDestination, service: "web",
                    expected: hex(signature + "21 11 0012  C0A80001 C0A8000B  DC04 01BB  01 0003 776562")),
    // 0x21 TCP over IPv6, length 36 + 8 (ALPN "echo").
    ProxyHeaderCase(label: "v2 TCP6 with ALPN", version: .v2, source: endpoint("2001:db8::1", 56324),
                    destination: endpoint("2001:db8::11", 443), service: "echo",
                    expected: hex(signature + "21 21 002B  20010DB8000000000000000000000001 20010DB8000000000000000000000011"
                                  + "  DC04 01BB  01 0004 6563686F")),
    ProxyHeaderCase(label: "v2 IPv4-mapped is TCP4", version: .v2, source: mapped([192, 168, 0, 1], 56324),
                    destination: mapped([192, 168, 0, 11], 443), service: "web",
                    expected: hex(signature + "21 11 0012  C0A80001 C0A8000B  DC04 01BB  01 0003 776562")),
    // UNSPEC: no addresses, the TLV only.
    ProxyHeaderCase(label: "v2 not a socket", version: .v2, source: nil, destination: nil, service: "web",
                    expected: hex(signature + "21 00 0006  01 0003 776562")),
    // The ends of one socket are one family; anything else is not described.
    ProxyHeaderCase(label: "v1 mixed families", version: .v1, source: endpoint("192.168.0.1", 1), destination: endpoint("::1", 2),
                    service: "web", expected: Array("PROXY UNKNOWN\r\n".utf8)),
]

@Suite struct ProxyHeaderTests {
    /// Each header is exactly the bytes doc/proxy-protocol.txt prescribes.
    @Test(arguments: proxyHeaderCases)
    func encodes(_ example: ProxyHeaderCase) {
        let bytes = ProxyHeader.bytes(example.version, source: example.source, destination: example.destination,
                                      service: ServiceName(example.service)!)
        #expect(bytes == example.expected)
    }

    /// The longest v1 line fits the 107 bytes a receiver must accept (section 2.1).
    @Test func longestTextLineFits() {
        let widest = endpoint("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535)
        let bytes = ProxyHeader.bytes(.v1, source: widest, destination: widest, service: ServiceName("web")!)
        #expect(bytes.count == 104)
        #expect(bytes.count <= 107)
    }

    /// The v2 length field counts every byte after the 16-byte fixed part, so a
    /// receiver skips exactly the header, even with the longest service name.
    @Test func lengthFieldCountsTheRest() {
        let name = ServiceName(String(repeating: "x", count: RequestParser.maximumNameLength))!
        let bytes = ProxyHeader.bytes(.v2, source: endpoint("::1", 1), destination: endpoint("::1", 2), service: name)
        #expect(Int(bytes[14]) << 8 | Int(bytes[15]) == bytes.count - 16)
        #expect(bytes.count <= 536, "fits the smallest TCP segment (section 2)")
    }
}
