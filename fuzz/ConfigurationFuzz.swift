// libFuzzer target: the configuration loader (fuzz/run).
//
// The input is the file's bytes, decoded as UTF-8 (invalid sequences become
// U+FFFD, as the server reads a file), parsed as a root server and as an
// unprivileged one with fixed accounts. Every invariant is a precondition: a
// violation is a crash, which libFuzzer reports and saves.
import TCPMUXProtocol
import TCPMUXServices

/// The accounts of the golden tests, so that users and groups resolve.
private let accounts = Accounts(
    passwd: """
    root:x:0:0:root:/root:/bin/sh
    # a comment
    +nisuser::::::
    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
    alice:x:1000:1000:Alice:/home/alice:/bin/sh
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
    broken:x:notanumber:1
    """,
    group: """
    root:x:0:
    daemon:x:1:
    staff:x:50:alice,bob
    wheel:x:10:bob,alice
    alice:x:1000:
    nogroup:x:65534:
    """)

private func isPrintable(_ text: String) -> Bool {
    text.utf8.allSatisfy { (0x20...0x7E).contains($0) }
}

private func check(_ text: String, lines: Int, root: Bool) {
    let context = Configuration.Context(runningAsRoot: root) { accounts }
    do throws(InvalidConfiguration) {
        let table = try Configuration.parse(text, file: "fuzz.conf", context: context)
        // The round trip: what -n prints parses back to the same table, and prints
        // the same text again.
        let normalized = Configuration.normalized(table)
        let again: ServiceTable
        do throws(InvalidConfiguration) {
            again = try Configuration.parse(normalized, file: "normalized", context: context)
        } catch {
            fatalError("the normalized table does not parse (root \(root)): \(error)\n--- normalized:\n\(normalized)")
        }
        precondition(again == table, "the normalized table parses to another table (root \(root))\n--- normalized:\n\(normalized)")
        precondition(Array(Configuration.normalized(again).utf8) == Array(normalized.utf8),
                     "normalizing twice changes the text (root \(root))\n--- normalized:\n\(normalized)")
    } catch {
        precondition(!error.errors.isEmpty, "invalid without an error")
        var previous = 0
        for mistake in error.errors {
            precondition((1...lines).contains(mistake.line), "error at line \(mistake.line) of \(lines): \(mistake)")
            precondition(mistake.line > previous, "errors out of order or two on one line: \(error)")
            previous = mistake.line
            precondition(!mistake.message.isEmpty, "an error without a message")
            precondition(isPrintable(mistake.message), "an error message that is not printable: \(escapedForLog(mistake.message.utf8))")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfiguration(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 || data == nil ? UnsafeBufferPointer<UInt8>(start: nil, count: 0) : UnsafeBufferPointer(start: data, count: size)
    let text = String(decoding: bytes, as: UTF8.self)
    // The file's lines as the parser numbers them: one more than its line feeds.
    let lines = text.utf8.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
    check(text, lines: lines, root: true)
    check(text, lines: lines, root: false)
    return 0
}
