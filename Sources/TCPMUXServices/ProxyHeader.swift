import TCPMUXProtocol

/// The PROXY protocol header a `forward` service with `proxy=` writes to its
/// backend before any byte of the client, so that the backend learns who the
/// client is (HAProxy's doc/proxy-protocol.txt, versions 1 and 2).
public enum ProxyHeader {
    /// The option's value: `proxy=v1` (the text line) or `proxy=v2` (binary).
    public enum Version: String, Equatable, Sendable, CaseIterable {
        case v1, v2
    }

    /// One end of the client's TCP connection.
    public struct Endpoint: Equatable, Sendable {
        public let address: IPAddress
        public let port: UInt16

        public init(address: IPAddress, port: UInt16) {
            self.address = address
            self.port = port
        }
    }

    /// The version 2 signature (section 2.2): 12 bytes, a NUL among them.
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// PP2_TYPE_ALPN (section 2.2.1): "a byte sequence defining the upper layer
    /// protocol in use over the connection", which is what a TCPMUX service
    /// name selects (RFC 1078).
    public static let applicationProtocolType: UInt8 = 0x01

    /// The header for a connection from `source` (getpeername) arriving on
    /// `destination` (getsockname); nil for either when fd 0 is not an IP socket,
    /// which gives `PROXY UNKNOWN` (v1) or the UNSPEC family (v2). In v2 the
    /// configured service name follows as a PP2_TYPE_ALPN TLV.
    public static func bytes(_ version: Version, source: Endpoint?, destination: Endpoint?, service: ServiceName) -> [UInt8] {
        var addresses: (Endpoint, Endpoint)?
        if let source, let destination { addresses = sameFamily(source, destination) }
        switch version {
        case .v1: return textLine(addresses)
        case .v2: return binary(addresses, service: service)
        }
    }

    /// The two ends of one TCP connection are one family: an IPv4-mapped
    /// address is already IPv4 (IPAddress), so a dual-stack socket's IPv4
    /// client and the address it arrived on are both TCP4. Ends that differ
    /// cannot come from one socket, and are not described.
    private static func sameFamily(_ source: Endpoint, _ destination: Endpoint) -> (Endpoint, Endpoint)? {
        source.address.isIPv4 == destination.address.isIPv4 ? (source, destination) : nil
    }

    /// Version 1 (section 2.1): `PROXY TCP4 SRC DST SPORT DPORT\r\n`, at most
    /// 107 bytes; `PROXY UNKNOWN\r\n` when the addresses are not known.
    private static func textLine(_ addresses: (Endpoint, Endpoint)?) -> [UInt8] {
        guard let (source, destination) = addresses else { return Array("PROXY UNKNOWN\r\n".utf8) }
        let family = source.address.isIPv4 ? "TCP4" : "TCP6"
        let line = "PROXY \(family) \(source.address) \(destination.address) \(source.port) \(destination.port)\r\n"
        return Array(line.utf8)
    }

    /// Version 2 (section 2.2): signature, version 2 and command PROXY (0x21),
    /// family and protocol (0x11 TCP over IPv4, 0x21 TCP over IPv6, 0x00
    /// UNSPEC), the big-endian length of what follows, the addresses, the
    /// ports, then the TLV.
    private static func binary(_ addresses: (Endpoint, Endpoint)?, service: ServiceName) -> [UInt8] {
        var block: [UInt8] = []
        var family: UInt8 = 0x00
        if let (source, destination) = addresses {
            family = source.address.isIPv4 ? 0x11 : 0x21
            block += source.address.bytes + destination.address.bytes
            block += bigEndian(source.port) + bigEndian(destination.port)
        }
        let name = service.bytes
        block += [applicationProtocolType] + bigEndian(UInt16(name.count)) + name
        return signature + [0x21, family] + bigEndian(UInt16(block.count)) + block
    }

    private static func bigEndian(_ value: UInt16) -> [UInt8] {
        [UInt8(value >> 8), UInt8(value & 0xFF)]
    }
}
