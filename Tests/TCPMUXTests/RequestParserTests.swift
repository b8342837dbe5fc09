import Testing
@testable import TCPMUXProtocol

/// One row of the parser's contract: the bytes a client sends, what the parser
/// decides, and how many bytes it consumed to decide (never past the CRLF).
struct ParserCase: CustomTestStringConvertible, Sendable {
    let input: [UInt8]
    /// Where the input ends before an outcome, `endOfInput()`'s rejection.
    let outcome: RequestParser.Outcome
    let consumed: Int

    init(_ input: [UInt8], _ outcome: RequestParser.Outcome, consumed: Int? = nil) {
        self.input = input
        self.outcome = outcome
        self.consumed = consumed ?? input.count
    }

    init(_ text: String, _ outcome: RequestParser.Outcome, consumed: Int? = nil) {
        self.init(Array(text.utf8), outcome, consumed: consumed)
    }

    var testDescription: String { "\"\(escapedForLog(input))\"" }
}

func request(_ name: String) -> RequestParser.Outcome { .request(ServiceName(name)!) }

let cap = RequestParser.maximumNameLength
let longestName = String(repeating: "a", count: cap)

let parserCases: [ParserCase] = [
    // Valid requests; bytes after the CRLF are the selected service's and stay unread.
    ParserCase("tcpmux\r\n", request("tcpmux")),
    ParserCase("HELP\r\n", request("HELP")),
    ParserCase("x\r\n", request("x")),
    ParserCase("tcpmux\r\nHELP\r\n", request("tcpmux"), consumed: 8),
    ParserCase("echo\r\n\r\n\0\u{7F}garbage", request("echo"), consumed: 6),
    ParserCase("!#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~\r\n", request("!#$%&'()*+,-./0123456789:;<=>?@AZ[\\]^_`az{|}~")),
    ParserCase(String(repeating: "a", count: cap - 1) + "\r\n", request(String(repeating: "a", count: cap - 1))),
    ParserCase(longestName + "\r\n", request(longestName)),
    // The cap: rejected at the byte past it, without waiting for a line end.
    ParserCase(longestName + "a", .rejected(.nameTooLong)),
    ParserCase(longestName + "a\r\n", .rejected(.nameTooLong), consumed: cap + 1),
    ParserCase(String(repeating: "a", count: 1000), .rejected(.nameTooLong), consumed: cap + 1),
    // Line ends other than CRLF.
    ParserCase("tcpmux\n", .rejected(.bareLineFeed)),
    ParserCase("\n", .rejected(.bareLineFeed)),
    ParserCase("tcpmux\rx\n", .rejected(.strayCarriageReturn), consumed: 8),
    ParserCase("tcpmux\r\r\n", .rejected(.strayCarriageReturn), consumed: 8),
    ParserCase("tcpmux\n\r", .rejected(.bareLineFeed), consumed: 7),
    // Empty name: decided at the CR, whatever follows.
    ParserCase("\r\n", .rejected(.emptyName), consumed: 1),
    ParserCase("\rx", .rejected(.emptyName), consumed: 1),
    // Bytes that are never part of a name.
    ParserCase("tcp\0mux\r\n", .rejected(.controlByte), consumed: 4),
    ParserCase("\0", .rejected(.controlByte)),
    ParserCase("tcp\u{1B}[2J\r\n", .rejected(.controlByte), consumed: 4),
    ParserCase("tcp\u{7F}\r\n", .rejected(.controlByte), consumed: 4),
    ParserCase("tcp mux\r\n", .rejected(.whiteSpace), consumed: 4),
    ParserCase(" tcpmux\r\n", .rejected(.whiteSpace), consumed: 1),
    ParserCase("tcpmux \r\n", .rejected(.whiteSpace), consumed: 7),
    ParserCase("tcp\tmux\r\n", .rejected(.whiteSpace), consumed: 4),
    ParserCase([0x74, 0x80, 0x0D, 0x0A], .rejected(.nonASCIIByte), consumed: 2),
    ParserCase([0xFF], .rejected(.nonASCIIByte)),
    ParserCase("tcpmüx\r\n", .rejected(.nonASCIIByte), consumed: 5),
    // The input ends first.
    ParserCase("", .rejected(.noRequest)),
    ParserCase("tcpmux", .rejected(.unterminatedRequest)),
    ParserCase("tcpmux\r", .rejected(.unterminatedRequest)),
    ParserCase(longestName, .rejected(.unterminatedRequest)),
]

/// Feeds `chunks` in turn, as TCP might deliver them; returns the outcome (the
/// end-of-input rejection if none came) and the bytes consumed.
func parse(_ chunks: [ArraySlice<UInt8>]) -> (RequestParser.Outcome, Int) {
    var parser = RequestParser()
    var consumed = 0
    for chunk in chunks {
        let step = parser.consume(chunk)
        consumed += step.consumed
        if let outcome = step.outcome {
            #expect(step.consumed <= chunk.count)
            return (outcome, consumed)
        }
        #expect(step.consumed == chunk.count, "a chunk without an outcome is consumed whole")
    }
    return (.rejected(parser.endOfInput()), consumed)
}

@Suite struct RequestParserTests {
    /// The decision does not depend on how the input is split: every single split
    /// point, and one byte at a time.
    @Test(arguments: parserCases)
    func everySplit(_ row: ParserCase) {
        let input = row.input[...]
        for split in 0...input.count {
            let (outcome, consumed) = parse([input[..<split], input[split...]])
            #expect(outcome == row.outcome, "split at \(split)")
            #expect(consumed == row.consumed, "split at \(split)")
        }
        let bytewise = parse(input.indices.map { input[$0...$0] })
        #expect(bytewise.0 == row.outcome)
        #expect(bytewise.1 == row.consumed)
    }

    /// Every pair of split points for the short cases: three chunks.
    @Test(arguments: parserCases.filter { $0.input.count <= 24 })
    func everyPairOfSplits(_ row: ParserCase) {
        let input = row.input[...]
        for first in 0...input.count {
            for second in first...input.count {
                let (outcome, consumed) = parse([input[..<first], input[first..<second], input[second...]])
                #expect(outcome == row.outcome && consumed == row.consumed, "splits at \(first), \(second)")
            }
        }
    }

    /// Every byte value, alone in a name: only printable ASCII can be part of one.
    @Test func everyByteValue() {
        for value in 0...255 {
            let byte = UInt8(value)
            var parser = RequestParser()
            let step = parser.consume([UInt8(ascii: "a"), byte, UInt8(ascii: "b"), 0x0D, 0x0A])
            if (0x21...0x7E).contains(byte) {
                #expect(step.outcome == .request(ServiceName(validatedBytes: [0x61, byte, 0x62])))
            } else if byte == 0x0D {
                #expect(step.outcome == .rejected(.strayCarriageReturn))
            } else {
                guard case .rejected = step.outcome else {
                    Issue.record("byte \(value) accepted in a name")
                    continue
                }
                #expect(step.consumed == 2, "rejected at the bad byte itself, byte \(value)")
            }
        }
    }

    /// The log sees exactly what was read, bad byte included.
    @Test func receivedBytes() {
        var parser = RequestParser()
        _ = parser.consume(Array("ab\u{1}cd".utf8))
        #expect(parser.received == [0x61, 0x62, 0x01])
        #expect(escapedForLog(parser.received) == "ab\\x01")
    }
}

@Suite struct ServiceNameTests {
    @Test func caseInsensitive() {
        #expect(ServiceName("HELP") == ServiceName("help"))
        #expect(ServiceName("HeLp") == .help)
        #expect(ServiceName("TcpMux")!.description == "TcpMux", "case is kept for display")
        #expect(ServiceName("tcpmux") != ServiceName("tcpmux2"))
    }

    /// Configuration names obey the same rule as requests.
    @Test(arguments: ["", "a b", "tab\t", "nul\0", "ü", String(repeating: "a", count: cap + 1)])
    func invalidNames(_ text: String) {
        #expect(ServiceName(text) == nil)
    }

    @Test func longestNameIsValid() {
        #expect(ServiceName(longestName) != nil)
    }
}

@Suite struct ReplyTests {
    @Test func wireBytes() {
        #expect(Reply.positive("OK").bytes == Array("+OK\r\n".utf8))
        #expect(Reply.positive("").bytes == Array("+\r\n".utf8))
        #expect(Reply.negative(.unknownService).bytes == Array("-Service not available\r\n".utf8))
        #expect(Reply.serviceList([ServiceName("a")!, ServiceName("B")!]).bytes == Array("a\r\nB\r\n".utf8))
        #expect(Reply.serviceList([]).bytes == [])
    }

    /// Every rejection is exactly one printable line: `-`, text, CRLF, and no NUL.
    @Test(arguments: Rejection.allCases)
    func rejectionIsOnePrintableLine(_ rejection: Rejection) {
        let bytes = Reply.negative(rejection).bytes
        #expect(bytes.first == UInt8(ascii: "-"))
        #expect(bytes.suffix(2) == [0x0D, 0x0A])
        #expect(bytes.dropLast(2).allSatisfy { (0x20...0x7E).contains($0) })
        #expect(bytes.count > 3, "a reason is given")
    }

    /// A message cannot smuggle a line break or a NUL onto the wire.
    @Test func positiveTextIsMadePrintable() {
        #expect(Reply.positive("a\r\nb\0é").bytes == Array("+a??b???\r\n".utf8))
    }

    @Test func logEscaping() {
        #expect(escapedForLog(Array("tcpmux".utf8)) == "tcpmux")
        #expect(escapedForLog([0x22, 0x5C, 0x0D, 0x0A, 0x00, 0xFF]) == "\\\"\\\\\\x0d\\x0a\\x00\\xff")
    }
}
