/// The text forms of IPv4 and IPv6 addresses, read and written byte for byte as
/// glibc's inet_pton(3) and inet_ntop(3) do (glibc resolv/inet_pton.c and
/// resolv/inet_ntop.c, from ISC BIND), in plain Swift: the core calls no libc.
/// Tests/TCPMUXTests/NetworkTextTests.swift compares both with glibc.
enum AddressText {
    /// inet_pton(AF_INET): exactly four decimal parts 0-255, each without a
    /// leading zero ("01" is refused: other readers take it as octal), and
    /// nothing else; 4 bytes in network order.
    static func ipv4(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        var bytes: [UInt8] = []
        var value = 0
        var digits = 0
        for byte in text {
            if let digit = decimalValue(byte) {
                if digits > 0 && value == 0 { return nil }
                value = value * 10 + digit
                guard value <= 255 else { return nil }
                digits += 1
            } else if byte == UInt8(ascii: "."), digits > 0, bytes.count < 3 {
                bytes.append(UInt8(value))
                value = 0
                digits = 0
            } else {
                return nil
            }
        }
        guard digits > 0, bytes.count == 3 else { return nil }
        bytes.append(UInt8(value))
        return bytes
    }

    /// inet_pton(AF_INET6): eight groups of one to four hex digits, at most one
    /// `::` standing for one or more zero groups, and optionally a dotted IPv4
    /// address as the last 32 bits; 16 bytes in network order.
    static func ipv6(_ text: ArraySlice<UInt8>) -> [UInt8]? {
        let colon = UInt8(ascii: ":")
        var index = text.startIndex
        guard index < text.endIndex else { return nil }
        // A leading colon must be half of a leading `::`.
        if text[index] == colon {
            index += 1
            guard index < text.endIndex, text[index] == colon else { return nil }
        }
        var bytes: [UInt8] = []
        var gap: Int?  // where `::` stands in bytes
        var token = index  // start of the current group, for an IPv4 tail
        var value = 0
        var digits = 0
        while index < text.endIndex {
            let byte = text[index]
            index += 1
            if let digit = hexValue(byte) {
                guard digits < 4 else { return nil }
                value = value << 4 | digit
                digits += 1
            } else if byte == colon {
                token = index
                if digits == 0 {
                    guard gap == nil else { return nil }
                    gap = bytes.count
                } else {
                    // A group ends with `:` only if another follows.
                    guard index < text.endIndex, bytes.count + 2 <= 16 else { return nil }
                    bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
                    value = 0
                    digits = 0
                }
            } else if byte == UInt8(ascii: "."), bytes.count + 4 <= 16, let quad = ipv4(text[token...]) {
                bytes += quad
                digits = 0
                break
            } else {
                return nil
            }
        }
        if digits > 0 {
            guard bytes.count + 2 <= 16 else { return nil }
            bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
        }
        if let gap {
            // `::` stands for at least one zero group.
            guard bytes.count < 16 else { return nil }
            bytes.insert(contentsOf: [UInt8](repeating: 0, count: 16 - bytes.count), at: gap)
        }
        return bytes.count == 16 ? bytes : nil
    }

    /// inet_ntop(AF_INET): `192.0.2.1`.
    static func text(ipv4 bytes: ArraySlice<UInt8>) -> [UInt8] {
        var text: [UInt8] = []
        for (index, byte) in bytes.enumerated() {
            if index > 0 { text.append(UInt8(ascii: ".")) }
            appendDigits(of: Int(byte), radix: 10, to: &text)
        }
        return text
    }

    /// inet_ntop(AF_INET6): lowercase hex groups without leading zeros; the
    /// longest run of two or more zero groups (the first of equals) as `::`;
    /// `::a.b.c.d` and `::ffff:a.b.c.d` for IPv4-compatible and IPv4-mapped
    /// addresses, as glibc writes them (RFC 4291 section 2.2).
    static func text(ipv6 bytes: [UInt8]) -> [UInt8] {
        let groups = (0..<8).map { Int(bytes[2 * $0]) << 8 | Int(bytes[2 * $0 + 1]) }
        var best = (start: -1, count: 0)
        var run = (start: -1, count: 0)
        for (index, group) in groups.enumerated() {
            if group == 0 {
                run = run.start < 0 ? (index, 1) : (run.start, run.count + 1)
                if run.count > best.count { best = run }
            } else {
                run = (-1, 0)
            }
        }
        if best.count < 2 { best = (-1, 0) }
        var text: [UInt8] = []
        for (index, group) in groups.enumerated() {
            if best.start >= 0 && index >= best.start && index < best.start + best.count {
                if index == best.start { text.append(UInt8(ascii: ":")) }
                continue
            }
            if index > 0 { text.append(UInt8(ascii: ":")) }
            if index == 6 && best.start == 0 && (best.count == 6 || (best.count == 5 && groups[5] == 0xFFFF)) {
                text += self.text(ipv4: bytes[12...])
                return text
            }
            appendDigits(of: group, radix: 16, to: &text)
        }
        if best.start >= 0 && best.start + best.count == 8 { text.append(UInt8(ascii: ":")) }
        return text
    }

    private static func decimalValue(_ byte: UInt8) -> Int? {
        (0x30...0x39).contains(byte) ? Int(byte - 0x30) : nil
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 0x30...0x39: Int(byte - 0x30)
        case 0x41...0x46: Int(byte - 0x41 + 10)
        case 0x61...0x66: Int(byte - 0x61 + 10)
        default: nil
        }
    }

    /// Lowercase digits, no leading zeros.
    private static func appendDigits(of value: Int, radix: Int, to text: inout [UInt8]) {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        if value >= radix { appendDigits(of: value / radix, radix: radix, to: &text) }
        text.append(digits[value % radix])
    }
}
