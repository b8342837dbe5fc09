// The forward hand-off: connect to a configured local daemon before any `+`,
// then relay both directions until both are closed.
import CSystem
import TCPMUXProtocol
import TCPMUXServices

/// How long a backend may take to accept the connection.
let connectSeconds = 5

/// The forward hand-off: the backend connected (and given the PROXY header, if
/// the service has one) before its `+`. Root, if the server had it, was given
/// up when the request was decided. Returns only if it was refused, its `-`
/// line written (or the `+` could not be).
func forwardHandOff(_ target: ForwardTarget, acceptance: Reply?, service: Service,
                    transcript: inout Transcript, client: SocketAddress?, local: SocketAddress?) {
    let backend: Int32
    do throws(HandOffFailure) {
        backend = try connectBackend(for: service, target, client: client, local: local,
                                     before: .after(seconds: connectSeconds), transcript: &transcript)
    } catch {
        transcript.append("forward failed: \(error)")
        _ = send(Session.failedHandOff, transcript: &transcript)
        return
    }
    if let acceptance, !send(acceptance, transcript: &transcript) {
        close(backend)  // The client is gone: the backend need not wait for the drain.
        return
    }
    // Logged now, so that a long relay, or one that is killed, leaves a record.
    transcript.append("forward \(target)")
    transcript.log()
    let started = Deadline.now
    let (up, down) = relay(input: requestInput, output: replyOutput, backend: backend)
    transcript.append("forward \(target) ended: \(up) bytes up, \(down) bytes down, \(started.elapsedMilliseconds) ms")
    transcript.log()
    exit(0)
}

/// Connects to `target` within `deadline`. Returns a non-blocking,
/// close-on-exec socket. TCP: a non-blocking connect, poll(2) until it completes.
/// A Unix socket whose listen backlog is full refuses a non-blocking connect at
/// once (EAGAIN), where a TCP backend in the same state is waited for; so a Unix
/// connect blocks, bounded by SO_SNDTIMEO, which the kernel uses as the time to
/// wait for room in the backlog (unix_stream_connect in net/unix/af_unix.c),
/// and both kinds get the same bound.
func connectBackend(_ target: ForwardTarget, before deadline: Deadline) throws(HandOffFailure) -> Int32 {
    var storage = sockaddr_storage()
    let length: Int
    var nonBlocking = SOCK_NONBLOCK.rawValue
    switch target {
    case .tcp(let address, let port) where address.isIPv4:
        var ipv4 = sockaddr_in()
        ipv4.sin_family = sa_family_t(AF_INET)
        ipv4.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &ipv4.sin_addr) { $0.copyBytes(from: address.bytes) }
        length = MemoryLayout<sockaddr_in>.size
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: ipv4, as: sockaddr_in.self) }
    case .tcp(let address, let port):
        var ipv6 = sockaddr_in6()
        ipv6.sin6_family = sa_family_t(AF_INET6)
        ipv6.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &ipv6.sin6_addr) { $0.copyBytes(from: address.bytes) }
        length = MemoryLayout<sockaddr_in6>.size
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: ipv6, as: sockaddr_in6.self) }
    case .unix(let path):
        var unix = sockaddr_un()
        unix.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &unix.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        length = MemoryLayout<sockaddr_un>.size
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: unix, as: sockaddr_un.self) }
        nonBlocking = 0
    }
    let fd = try valueOrFailure({ HandOffFailure("socket", $0) }) {
        socket(Int32(storage.ss_family), Int32(SOCK_STREAM.rawValue | nonBlocking | SOCK_CLOEXEC.rawValue), 0)
    }
    do throws(Errno) {
        if nonBlocking == 0 {
            // The time left becomes the send timeout, which bounds the wait for
            // room in the backlog; valueOrErrno's retry after EINTR waits again.
            var timeout = timeval(remaining: deadline)
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        do throws(Errno) {
            try nothingOrErrno {
                withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(length)) }
                }
            }
        } catch .wouldBlock where nonBlocking == 0 {
            throw .timedOut  // The backlog stayed full for the whole bound.
        } catch let error where error == .inProgress || error == .alreadyInProgress {
            guard waitUntilReady(fd, for: POLLOUT, before: deadline) else { throw .timedOut }
            var problem: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &problem, &length)
            if problem != 0 { throw Errno(problem) }
        }
    } catch {
        close(fd)
        throw HandOffFailure("connect \(target)", error)
    }
    if nonBlocking == 0 {
        var none = timeval()
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, socklen_t(MemoryLayout<timeval>.size))
        setNonBlocking(fd)
    }
    return fd
}

extension timeval {
    /// What is left of `deadline`, at least a microsecond (0 would mean no timeout).
    init(remaining deadline: Deadline) {
        let left = max(Int(deadline.remainingMilliseconds), 0)
        self.init(tv_sec: left / 1000, tv_usec: left == 0 ? 1 : (left % 1000) * 1000)
    }
}

/// O_NONBLOCK on `fd` (fcntl(2) F_SETFL).
func setNonBlocking(_ fd: Int32) {
    _ = csystem_fcntl(fd, F_SETFL, csystem_fcntl(fd, F_GETFL, 0) | O_NONBLOCK)
}

/// One direction of the relay: bytes read from `source` wait in `buffer` until
/// `destination` takes them all; nothing more is read meanwhile (backpressure,
/// and memory bounded by the buffer).
private struct Direction {
    let source: Int32
    let destination: Int32
    var buffer: [UInt8]
    var start = 0
    var end = 0
    var sourceEnded = false
    var finished = false
    /// A side reset (a read or write failed): nothing more can pass either way.
    var broken = false
    var total = 0

    init(from source: Int32, to destination: Int32, capacity: Int) {
        self.source = source
        self.destination = destination
        // Uninitialized: only bytes read(2) wrote are ever sent. Zeroing both
        // buffers would write 512 KiB (and fault in every page) before the first
        // byte is relayed, for a backend that may say only hello.
        self.buffer = [UInt8](unsafeUninitializedCapacity: capacity) { _, count in count = capacity }
    }

    var wantsInput: Bool { !finished && !sourceEnded && start == end }
    var wantsOutput: Bool { !finished && start < end }

    mutating func fill() {
        let source = source
        switch buffer.withUnsafeMutableBytes({ space in Result { () throws(Errno) in try valueOrErrno { read(source, space.baseAddress!, space.count) } } }) {
        case .success(0):
            sourceEnded = true
        case .success(let count):
            start = 0
            end = count
        case .failure(.wouldBlock):
            break
        case .failure:
            sourceEnded = true
            broken = true
        }
        finishIfDrained()
    }

    mutating func flush() {
        let (destination, start, end) = (destination, start, end)
        switch buffer.withUnsafeBytes({ data in Result { () throws(Errno) in try valueOrErrno { write(destination, data.baseAddress! + start, end - start) } } }) {
        case .success(let count):
            self.start += count
            total += count
        case .failure(.wouldBlock):
            break
        case .failure:
            // The reader is gone: what is left can never be delivered.
            self.start = end
            sourceEnded = true
            broken = true
        }
        finishIfDrained()
    }

    /// Once the source ended and all was delivered, pass the half-close on.
    private mutating func finishIfDrained() {
        guard sourceEnded, start == end, !finished else { return }
        finished = true
        halfClose(destination)
    }
}

/// Relays client → backend and backend → client until both directions have
/// ended, passing each half-close on, or until either side resets: then the
/// relay ends at once (the other side is closed by the exit), instead of waiting
/// for the other side to send a byte that could go nowhere. Once one direction
/// has ended, the other, waiting for input, also watches its destination
/// (events 0: only POLLERR and POLLHUP are reported), so that a reset of that
/// side, or a Unix peer's close, is seen though nothing reads from it any more.
/// Returns the bytes delivered each way.
func relay(input: Int32, output: Int32, backend: Int32) -> (up: Int, down: Int) {
    setNonBlocking(input)
    setNonBlocking(output)
    let capacity = 256 * 1024
    var directions = [Direction(from: input, to: backend, capacity: capacity),
                      Direction(from: backend, to: output, capacity: capacity)]
    enum Role { case input, output, watch }
    relaying: while directions.contains(where: { !$0.finished }) {
        var entries: [pollfd] = []
        var owners: [(index: Int, role: Role)] = []
        for (index, direction) in directions.enumerated() {
            if direction.wantsInput {
                entries.append(pollfd(fd: direction.source, events: Int16(POLLIN), revents: 0))
                owners.append((index, .input))
                if directions[1 - index].finished {
                    entries.append(pollfd(fd: direction.destination, events: 0, revents: 0))
                    owners.append((index, .watch))
                }
            } else if direction.wantsOutput {
                entries.append(pollfd(fd: direction.destination, events: Int16(POLLOUT), revents: 0))
                owners.append((index, .output))
            }
        }
        // No deadline: a relay lasts as long as both ends keep it.
        guard (try? valueOrErrno({ poll(&entries, nfds_t(entries.count), -1) })) != nil else { break }
        for (entry, owner) in zip(entries, owners) where entry.revents != 0 {
            // Optimistic: what was read is written at once, and after a write
            // that took everything the next read is tried at once; poll(2) is
            // asked only when a side has nothing or no room (EAGAIN), which
            // halves the system calls of a bulk transfer.
            switch owner.role {
            case .input:
                directions[owner.index].fill()
                if directions[owner.index].wantsOutput { directions[owner.index].flush() }
            case .output:
                directions[owner.index].flush()
                if directions[owner.index].wantsInput { directions[owner.index].fill() }
            case .watch: break relaying
            }
            if directions[owner.index].broken { break relaying }
        }
    }
    return (directions[0].total, directions[1].total)
}
