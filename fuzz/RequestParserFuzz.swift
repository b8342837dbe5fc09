// libFuzzer target: the request parser, fed in random chunkings (fuzz/run).
//
// Input layout: the first byte's low 4 bits give N, the next N bytes are chunk
// sizes (0 included: an empty chunk), used in turn until the input is fed; the
// rest is what the client sends. N = 0 feeds the input as a single chunk. Every
// invariant is a precondition: a violation is a crash, which libFuzzer reports
// and saves.
import TCPMUXProtocol

/// One run of the parser over `chunks`, checking what holds for every chunk.
private func chunkedRun(_ input: [UInt8], sizes: [Int]) -> (outcome: RequestParser.Outcome, consumed: Int, received: [UInt8]) {
    var parser = RequestParser()
    var offset = 0
    var turn = 0
    let allEmpty = sizes.allSatisfy { $0 == 0 }
    while offset < input.count {
        let size = sizes.isEmpty ? input.count : (allEmpty ? 1 : sizes[turn % sizes.count])
        turn += 1
        let chunk = input[offset..<min(offset + size, input.count)]
        let step = parser.consume(chunk)
        precondition(step.consumed <= chunk.count, "consumed more than the chunk")
        offset += step.consumed
        if let outcome = step.outcome {
            precondition(step.consumed >= 1, "an outcome without a byte")
            return (outcome, offset, parser.received)
        }
        precondition(step.consumed == chunk.count, "a chunk without an outcome is consumed whole")
    }
    return (.rejected(parser.endOfInput()), offset, parser.received)
}

/// The reference: one byte at a time through `consume(_: UInt8)`.
private func bytewiseRun(_ input: [UInt8]) -> (outcome: RequestParser.Outcome, consumed: Int, received: [UInt8]) {
    var parser = RequestParser()
    for (index, byte) in input.enumerated() {
        if let outcome = parser.consume(byte) {
            return (outcome, index + 1, parser.received)
        }
    }
    let rejection = parser.endOfInput()
    precondition(rejection == (input.isEmpty ? .noRequest : .unterminatedRequest), "endOfInput: \(rejection)")
    return (.rejected(rejection), input.count, parser.received)
}

private func isNameByte(_ byte: UInt8) -> Bool { (0x21...0x7E).contains(byte) }

/// The grammar itself, `1*256 (%x21-7E) CR LF` at the start of the input: the
/// name it carries, or nil.
private func grammarName(_ input: [UInt8]) -> [UInt8]? {
    let name = input.prefix(while: isNameByte)
    guard (1...RequestParser.maximumNameLength).contains(name.count),
          input.dropFirst(name.count).starts(with: [0x0D, 0x0A]) else { return nil }
    return Array(name)
}

/// Where the first CRLF ends (just past its LF), or nil if there is none.
private func endOfFirstLine(_ input: [UInt8]) -> Int? {
    guard input.count >= 2 else { return nil }
    for index in 0..<(input.count - 1) where input[index] == 0x0D && input[index + 1] == 0x0A {
        return index + 2
    }
    return nil
}

private func check(_ data: [UInt8]) {
    let count = data.isEmpty ? 0 : min(Int(data[0] & 0x0F), data.count - 1)
    let sizes = data.dropFirst().prefix(count).map(Int.init)
    let input = Array(data.dropFirst(1 + count))

    let reference = bytewiseRun(input)
    let chunked = chunkedRun(input, sizes: sizes)
    precondition(chunked.outcome == reference.outcome, "chunking changed the outcome: \(chunked.outcome) vs \(reference.outcome)")
    precondition(chunked.consumed == reference.consumed, "chunking changed the consumed count: \(chunked.consumed) vs \(reference.consumed)")
    precondition(chunked.received == reference.received, "chunking changed the received bytes")
    precondition(reference.received == Array(input.prefix(reference.consumed)), "received is not what was consumed")

    // Never past the request line.
    precondition(reference.consumed <= (endOfFirstLine(input) ?? input.count), "consumed past the first CRLF")

    switch reference.outcome {
    case .request(let name):
        precondition((1...RequestParser.maximumNameLength).contains(name.bytes.count), "accepted a name of \(name.bytes.count) bytes")
        precondition(name.bytes.allSatisfy(isNameByte), "accepted a name byte outside 0x21-0x7E")
        precondition(reference.consumed == name.bytes.count + 2, "a request is its name and CRLF")
        precondition(input.prefix(reference.consumed) == name.bytes + [0x0D, 0x0A], "the name is not the bytes sent")
        precondition(grammarName(input) == name.bytes, "accepted what the grammar refuses")
    case .rejected(let rejection):
        precondition(grammarName(input) == nil, "refused what the grammar accepts: \(rejection)")
        let line = Reply.negative(rejection).bytes
        precondition(line.count >= 3 && line.first == UInt8(ascii: "-"), "a rejection is a - line")
        precondition(line.suffix(2) == [0x0D, 0x0A], "a rejection ends with CRLF")
        precondition(line.dropLast(2).allSatisfy { (0x20...0x7E).contains($0) }, "a rejection is one printable line, no NUL")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestParser(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 || data == nil ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    check(bytes)
    return 0
}
