/// A local daemon the connection is relayed to.
public enum ForwardTarget: Equatable, Sendable, CustomStringConvertible {
    case tcp(IPAddress, port: UInt16)
    case unix(path: String)

    /// `192.0.2.1:80`, `[::1]:80` or an absolute path.
    public init?(_ text: String) {
        if text.hasPrefix("/") {
            // sockaddr_un holds 108 bytes, the terminating NUL included.
            guard text.utf8.count < 108, !text.utf8.contains(0) else { return nil }
            self = .unix(path: text)
            return
        }
        guard let colon = text.lastIndex(of: ":"), let port = decimal(text[text.index(after: colon)...], as: UInt16.self),
              port > 0 else { return nil }
        var host = text[..<colon]
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = host.dropFirst().dropLast()
            guard let address = IPAddress(String(host)), !address.isIPv4 else { return nil }
            self = .tcp(address, port: port)
        } else {
            guard let address = IPAddress(String(host)), address.isIPv4 else { return nil }
            self = .tcp(address, port: port)
        }
    }

    public var description: String {
        switch self {
        case .tcp(let address, let port): address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
        case .unix(let path): path
        }
    }
}
