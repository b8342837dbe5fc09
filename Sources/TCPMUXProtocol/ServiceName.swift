/// A service name as a client may send it: 1 to 256 bytes of printable ASCII.
/// Names compare case-insensitively ("The service name is never case
/// sensitive", RFC 1078), HELP included.
public struct ServiceName: Hashable, Sendable, CustomStringConvertible {
    /// The bytes as written, case preserved.
    public let bytes: [UInt8]
    /// The bytes with ASCII letters lowered: what names are compared by.
    public let key: [UInt8]

    init(validatedBytes bytes: [UInt8]) {
        self.bytes = bytes
        self.key = bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    }

    /// A name from configuration; nil if no request could ever carry it.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= RequestParser.maximumNameLength,
              bytes.allSatisfy({ Rejection(nameByte: $0) == nil }) else { return nil }
        self.init(validatedBytes: bytes)
    }

    public var description: String { String(decoding: bytes, as: UTF8.self) }

    public static func == (lhs: ServiceName, rhs: ServiceName) -> Bool { lhs.key == rhs.key }
    public func hash(into hasher: inout Hasher) { hasher.combine(key) }

    /// The pseudo-service that lists the others (RFC 1078).
    public static let help = ServiceName("HELP")!
}
