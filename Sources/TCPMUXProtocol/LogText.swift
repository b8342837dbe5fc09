/// Untrusted bytes as printable ASCII for a log line: printable bytes stay, `\`
/// and `"` are escaped, anything else becomes `\xNN` (as OpenBSD comsat's vis()).
// Inlinable, so that callers in other modules get a specialized copy: the
// generic entry point resolves its iterator type at run time, on every connection.
@inlinable
public func escapedForLog(_ bytes: some Sequence<UInt8>) -> String {
    let hex = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        switch byte {
        case UInt8(ascii: "\\"), UInt8(ascii: "\""):
            out += [UInt8(ascii: "\\"), byte]
        case 0x20...0x7E:
            out.append(byte)
        default:
            out += [UInt8(ascii: "\\"), UInt8(ascii: "x"), hex[Int(byte >> 4)], hex[Int(byte & 0xF)]]
        }
    }
    return String(decoding: out, as: UTF8.self)
}
