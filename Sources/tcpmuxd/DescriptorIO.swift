// Reading, writing, waiting on and half-closing file descriptors: poll(2),
// recv(2), read(2), send(2), write(2), shutdown(2).
import CSystem

/// Waits until `fd` is ready for `events` (POLLIN, POLLOUT) or the deadline
/// passes. True if ready, or in error or hung up: the call after it will tell.
/// A failing poll(2) counts as the deadline passing, so that the blocking call
/// after it can never wait without one.
func waitUntilReady(_ fd: Int32, for events: Int32, before deadline: Deadline) -> Bool {
    var entry = pollfd(fd: fd, events: Int16(events), revents: 0)
    // Each retry after EINTR recomputes what is left of the deadline.
    guard let ready = try? valueOrErrno({ poll(&entry, 1, deadline.remainingMilliseconds) }) else { return false }
    return ready > 0
}

/// The request line's bytes as they arrive, taken from the socket only as far
/// as the parser consumed them: whatever follows the request's CRLF belongs to
/// the selected service. On a socket, recv(2) with MSG_PEEK looks at what is
/// waiting and read(2) then takes exactly what was consumed (three system
/// calls for a line that arrived whole, not two per byte); on anything else
/// (a pipe, run from a shell), one byte is read at a time.
struct RequestInput {
    enum Chunk {
        case bytes([UInt8])
        case endOfInput
        case timedOut
        case failed(Errno)
    }

    let fd: Int32
    private var peeking = true
    private var buffer = [UInt8](repeating: 0, count: 512)

    init(_ fd: Int32) { self.fd = fd }

    /// What has arrived and is not yet taken (at least one byte), waiting for it
    /// until the deadline.
    mutating func next(before deadline: Deadline) -> Chunk {
        while true {
            guard waitUntilReady(fd, for: POLLIN, before: deadline) else { return .timedOut }
            let (fd, peek) = (fd, peeking)
            let got = buffer.withUnsafeMutableBytes { space in
                Result { () throws(Errno) in
                    try valueOrErrno {
                        peek ? recv(fd, space.baseAddress!, space.count, Int32(MSG_PEEK | MSG_DONTWAIT)) : read(fd, space.baseAddress!, 1)
                    }
                }
            }
            switch got {
            case .success(0): return .endOfInput
            case .success(let count): return .bytes(Array(buffer[..<count]))
            case .failure(.wouldBlock): continue
            case .failure(.notSocket) where peeking: peeking = false
            case .failure(let error): return .failed(error)
            }
        }
    }

    /// Takes the first `count` bytes of what `next` returned off the socket
    /// (they are there: they were peeked). Nothing to do after a one-byte read.
    mutating func take(_ count: Int) {
        guard peeking else { return }
        var left = count
        while left > 0 {
            let fd = fd
            let got = buffer.withUnsafeMutableBytes { space in try? valueOrErrno { read(fd, space.baseAddress!, left) } }
            guard let got, got > 0 else { return }
            left -= got
        }
    }
}

/// Writes all of `bytes`, looping over partial writes, or fails with ETIMEDOUT
/// once the deadline passes. poll(2) saying "writable" promises room for some
/// bytes, not for all: under inetd the socket is blocking, so each write is a
/// send(2) with MSG_DONTWAIT, which takes what fits and never waits (a client
/// that stops reading cannot hold a large HELP list past the deadline). On
/// anything but a socket (a pipe, run from a shell), write(2) of at most
/// PIPE_BUF bytes, which a writable pipe always has room for.
func writeAll(_ bytes: [UInt8], to fd: Int32, before deadline: Deadline) throws(Errno) {
    var written = 0
    var socket = true
    while written < bytes.count {
        guard waitUntilReady(fd, for: POLLOUT, before: deadline) else { throw .timedOut }
        let rest = bytes.count - written
        // withUnsafeBytes does not carry a typed error through: a Result does.
        let sent = bytes.withUnsafeBytes { buffer in
            Result { () throws(Errno) in
                try valueOrErrno {
                    socket ? send(fd, buffer.baseAddress! + written, rest, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                           : write(fd, buffer.baseAddress! + written, min(rest, Int(PIPE_BUF)))
                }
            }
        }
        switch sent {
        case .success(let count): written += count
        case .failure(.wouldBlock): continue
        case .failure(.notSocket) where socket: socket = false
        case .failure(let error): throw error
        }
    }
}

/// Whether `fd` is a socket (getsockopt(2) SO_TYPE answers only for one): under
/// a superserver, fd 2 is the client's connection, not a terminal.
func isSocket(_ fd: Int32) -> Bool {
    var type: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0
}

/// Ends our sending side: shutdown(2) SHUT_WR on a socket, so the peer reads
/// end of input while we may still read; close(2) on anything else (a pipe).
func halfClose(_ fd: Int32) {
    do throws(Errno) {
        try nothingOrErrno { shutdown(fd, Int32(SHUT_WR)) }
    } catch .notSocket {
        close(fd)
    } catch {
        // Already shut down or reset: nothing is left to send either way.
    }
}

/// After our last reply and its half-close: reads and discards what the client
/// still sends until it closes, the deadline passes or `limit` bytes went by.
/// Exiting with unread input would make the kernel reset the connection, and the
/// client could lose our reply.
func drain(_ input: Int32, until deadline: Deadline, limit: Int) {
    var buffer = [UInt8](unsafeUninitializedCapacity: 4096) { _, count in count = 4096 }
    var drained = 0
    while drained < limit, waitUntilReady(input, for: POLLIN, before: deadline) {
        let count = buffer.withUnsafeMutableBytes { space in try? valueOrErrno { read(input, space.baseAddress!, space.count) } }
        guard let count, count > 0 else { break }
        drained += count
    }
}
