/// An IPv4 or IPv6 address. An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what
/// a dual-stack socket reports for an IPv4 client) is the IPv4 address itself,
/// so that rules written for IPv4 apply to it.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// 4 or 16 bytes, network order.
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4: self.bytes = bytes
        case 16 where bytes[..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF:
            self.bytes = Array(bytes[12...])
        case 16: self.bytes = bytes
        default: return nil
        }
    }

    /// Numeric text only, as inet_pton(3) reads it (AddressText): a configuration
    /// never waits on a resolver. Any byte but hex digits, `.` and `:` is
    /// refused, a NUL included: `10.0.0.1<NUL>junk` is no address.
    public init?(_ text: String) {
        let utf8 = Array(text.utf8)
        if let bytes = AddressText.ipv4(utf8[...]) ?? AddressText.ipv6(utf8[...]) {
            self.init(bytes: bytes)
        } else {
            return nil
        }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    /// As inet_ntop(3) writes it.
    public var description: String {
        String(decoding: isIPv4 ? AddressText.text(ipv4: bytes[...]) : AddressText.text(ipv6: bytes), as: UTF8.self)
    }
}

/// A whole number written in decimal digits only: Swift's integer parsing also
/// takes a sign (`+80`), which no port or id in a file should carry.
func decimal<Number: FixedWidthInteger>(_ text: Substring, as: Number.Type = Number.self) -> Number? {
    guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else { return nil }
    return Number(text)
}

/// An address block in CIDR notation: `192.0.2.0/24`, `2001:db8::/32`; a bare
/// address is the block of that address alone.
public struct Network: Equatable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        // The prefix counts bits of the address as written: `::ffff:10.0.0.0/104`
        // is the IPv4 block 10.0.0.0/8.
        let writtenBits = parts[0].contains(":") ? 128 : 32
        var length = address.bytes.count * 8
        if parts.count == 2 {
            guard let given = decimal(parts[1], as: Int.self), given <= writtenBits else { return nil }
            length = given - (writtenBits - address.bytes.count * 8)
            guard length >= 0 else { return nil }
        }
        // Host bits must be zero: `10.0.0.1/8` is more likely a typo than a wish.
        guard Network.masked(address.bytes, length) == address.bytes else { return nil }
        self.address = address
        self.prefixLength = length
    }

    public func contains(_ candidate: IPAddress) -> Bool {
        candidate.bytes.count == address.bytes.count && Network.masked(candidate.bytes, prefixLength) == address.bytes
    }

    private static func masked(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let keep = min(max(length - index * 8, 0), 8)
            return keep == 8 ? byte : byte & ~(0xFF >> keep)
        }
    }

    public var description: String {
        prefixLength == address.bytes.count * 8 ? "\(address)" : "\(address)/\(prefixLength)"
    }
}

/// Where a connection comes from and arrived on; nil where fd 0 is not a socket.
public struct Endpoints: Equatable, Sendable {
    public var client: IPAddress?
    public var local: IPAddress?

    public init(client: IPAddress?, local: IPAddress?) {
        self.client = client
        self.local = local
    }
}

/// Who may use a service: client networks and the local addresses a connection
/// may arrive on (getsockname), so a service can be confined to the inside
/// interface (the NAT-PMP lesson, CERT VU#184540). Empty lists allow any; a
/// connection without addresses (fd 0 a pipe) passes only an empty list.
public struct Access: Equatable, Sendable {
    public var clients: [Network] = []
    public var locals: [Network] = []

    public init(clients: [Network] = [], locals: [Network] = []) {
        self.clients = clients
        self.locals = locals
    }

    public func allows(_ endpoints: Endpoints) -> Bool {
        Access.match(clients, endpoints.client) && Access.match(locals, endpoints.local)
    }

    private static func match(_ networks: [Network], _ address: IPAddress?) -> Bool {
        guard !networks.isEmpty else { return true }
        guard let address else { return false }
        return networks.contains { $0.contains(address) }
    }
}
