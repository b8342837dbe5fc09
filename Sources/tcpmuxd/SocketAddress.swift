// The two ends of the connection on fd 0: getpeername(2) and getsockname(2).
import CSystem
import TCPMUXServices

/// An address and port of a TCP connection.
struct SocketAddress: CustomStringConvertible {
    let address: IPAddress
    let port: UInt16

    /// `192.0.2.1:1234` or `[2001:db8::1]:1234`.
    var description: String { address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)" }
}

/// The far end (getpeername(2)) or our end (getsockname(2)) of the connection on
/// `fd`; nil when `fd` is not an IP socket (a pipe, when run from a shell).
func socketAddress(of fd: Int32, peer: Bool) -> SocketAddress? {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let status = withUnsafeMutablePointer(to: &storage) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
        }
    }
    guard status == 0 else { return nil }
    let family = Int32(storage.ss_family)
    return withUnsafeBytes(of: storage) { raw in
        switch family {
        case AF_INET:
            let address = raw.load(as: sockaddr_in.self)
            return withUnsafeBytes(of: address.sin_addr) { ip in
                IPAddress(bytes: Array(ip)).map { SocketAddress(address: $0, port: UInt16(bigEndian: address.sin_port)) }
            }
        case AF_INET6:
            let address = raw.load(as: sockaddr_in6.self)
            return withUnsafeBytes(of: address.sin6_addr) { ip in
                IPAddress(bytes: Array(ip)).map { SocketAddress(address: $0, port: UInt16(bigEndian: address.sin6_port)) }
            }
        default:
            return nil
        }
    }
}
