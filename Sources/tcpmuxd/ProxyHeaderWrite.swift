// The PROXY protocol header (proxy=v1|v2): written to the backend once it is
// connected, before the `+` and before the relay carries any byte of the client.
import CSystem
import TCPMUXServices

/// Connects to the backend of a forward `service` and, if the service asks for
/// it, writes the PROXY header describing the client's connection (`client`
/// from getpeername, `local` from getsockname of fd 0). The request parser
/// never read past the request's CRLF, so whatever the client pipelined is
/// still in the socket and reaches the backend after the header. A header
/// that cannot be written fails the hand-off like a refused connect.
func connectBackend(for service: Service, _ target: ForwardTarget, client: SocketAddress?, local: SocketAddress?,
                    before deadline: Deadline, transcript: inout Transcript) throws(HandOffFailure) -> Int32 {
    let backend = try connectBackend(target, before: deadline)
    guard let version = service.proxyHeader else { return backend }
    let header = ProxyHeader.bytes(version, source: client.map { ProxyHeader.Endpoint(address: $0.address, port: $0.port) },
                                   destination: local.map { ProxyHeader.Endpoint(address: $0.address, port: $0.port) },
                                   service: service.name)
    do throws(Errno) { try writeAll(header, to: backend, before: deadline) } catch {
        close(backend)
        throw HandOffFailure("PROXY \(version.rawValue) header to \(target)", error)
    }
    transcript.append("PROXY \(version.rawValue) header sent (\(header.count) bytes)")
    return backend
}
