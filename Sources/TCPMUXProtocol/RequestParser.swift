/// A TCPMUX request line (RFC 1078): a service name ended by CRLF.
///
/// The parser is a byte state machine that says how many of the bytes it was
/// given it consumed, so that the caller never takes past the request's CRLF:
/// whatever follows belongs to the selected service. It accepts exactly
///
///     request = 1*256 name-byte CR LF
///     name-byte = %x21-7E          ; printable ASCII, no space
///
/// and rejects at the first byte that cannot lead to a valid request: it never
/// truncates a name and never waits for a line end that could not save it.
/// (FreeBSD, NetBSD and GNU inetd end a name at CR, LF, NUL or EOF and silently
/// truncate it at 258 bytes: tcpmux() in their usr.sbin/inetd/inetd.c and
/// inetutils src/inetd.c.)
public struct RequestParser: Sendable {
    /// The longest service name accepted, in bytes. RFC 1078 sets none; names in
    /// practice are a few bytes, and Snader's well-behaved tcpmux caps at 256.
    public static let maximumNameLength = 256

    public enum Outcome: Equatable, Sendable {
        case request(ServiceName)
        case rejected(Rejection)
    }

    private enum State: Sendable {
        case name
        case carriageReturn
        case done
    }

    private var state = State.name
    private var name: [UInt8] = []

    public init() {
        name.reserveCapacity(16)
    }

    /// Every byte consumed so far, up to the line end or the byte that caused a
    /// rejection: what the log shows (escaped) for a rejected request.
    public private(set) var received: [UInt8] = []

    /// Feeds one byte. Returns nil while more bytes are needed, else the outcome;
    /// after an outcome the parser takes no more bytes.
    public mutating func consume(_ byte: UInt8) -> Outcome? {
        precondition(state != .done, "RequestParser fed after its outcome")
        received.append(byte)
        switch state {
        case .done:
            preconditionFailure()
        case .carriageReturn:
            state = .done
            guard byte == lineFeed else { return .rejected(.strayCarriageReturn) }
            return .request(ServiceName(validatedBytes: name))
        case .name:
            if byte == carriageReturn {
                guard !name.isEmpty else {
                    // Whatever comes next, the request cannot be valid.
                    state = .done
                    return .rejected(.emptyName)
                }
                state = .carriageReturn
                return nil
            }
            if let rejection = Rejection(nameByte: byte) {
                state = .done
                return .rejected(rejection)
            }
            guard name.count < Self.maximumNameLength else {
                state = .done
                return .rejected(.nameTooLong)
            }
            name.append(byte)
            return nil
        }
    }

    /// Feeds bytes until an outcome. Returns it (nil if more are needed) and how
    /// many bytes were consumed; bytes past the outcome are left untouched.
    public mutating func consume<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> (outcome: Outcome?, consumed: Int) {
        var consumed = 0
        for byte in bytes {
            consumed += 1
            if let outcome = consume(byte) {
                return (outcome, consumed)
            }
        }
        return (nil, consumed)
    }

    /// The input ended before an outcome.
    public mutating func endOfInput() -> Rejection {
        state = .done
        return received.isEmpty ? .noRequest : .unterminatedRequest
    }
}

let carriageReturn: UInt8 = 0x0D
let lineFeed: UInt8 = 0x0A

extension Rejection {
    /// Why `byte` can never be part of a service name, or nil if it can.
    init?(nameByte byte: UInt8) {
        switch byte {
        case 0x21...0x7E: return nil
        case lineFeed: self = .bareLineFeed
        case 0x20, 0x09: self = .whiteSpace
        case 0x00..<0x20, 0x7F: self = .controlByte
        default: self = .nonASCIIByte
        }
    }
}
