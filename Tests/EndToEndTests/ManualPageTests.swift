// The manual pages: lint clean, and true to the binary and the configuration.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

let manualPages = ["man/in.tcpmuxd.8", "man/tcpmuxd.conf.5"]

@Suite(needs([.mandoc])) struct ManualPageTests {
    /// mandoc -Tlint finds nothing: no error, no warning, no style remark but
    /// the one that depends on which pages this machine has (a cross-reference
    /// to xinetd(8), or to each other before they are installed).
    @Test(arguments: manualPages)
    func lintClean(_ page: String) throws {
        let mandoc = try Tool.mandoc.require()
        let run = try runClient([mandoc, "-Tlint", "\(packageRoot)/\(page)"], input: "")
        let remarks = (run.stdout + run.stderr).split(separator: "\n").filter {
            !$0.contains("STYLE: referenced manual not found") && !$0.contains("outdated mandoc.db")
        }
        #expect(remarks.isEmpty, "mandoc -Tlint \(page):\n\(remarks.joined(separator: "\n"))")
        let strict = try runClient([mandoc, "-Tlint", "-W", "warning", "\(packageRoot)/\(page)"], input: "")
        #expect(strict.status == 0, "mandoc -Tlint -W warning \(page): \(strict.stdout)\(strict.stderr)")
    }

    /// The page as a reader sees it, white space folded.
    func rendered(_ page: String) throws -> String {
        let run = try runClient([try Tool.mandoc.require(), "-Tascii", "\(packageRoot)/\(page)"], input: "")
        #expect(run.status == 0)
        // Drop the backspace overstrikes of bold and underline.
        var text = ""
        for character in run.stdout {
            if character == "\u{8}" { _ = text.popLast() } else { text.append(character) }
        }
        return text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    /// The synopsis is the binary's own usage line, and every section is there.
    @Test func serverPage() throws {
        let text = try rendered("man/in.tcpmuxd.8")
        let usage = try runWithPipes(["-h"], input: "").stdout
        let synopsis = try #require(usage.split(separator: " ", maxSplits: 1).last).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(text.contains("SYNOPSIS \(synopsis) DESCRIPTION"), "usage: \(synopsis)")
        for section in ["NAME", "OPTIONS", "LOGGING", "FILES", "EXIT STATUS", "EXAMPLES", "SEE ALSO", "STANDARDS", "SECURITY CONSIDERATIONS"] {
            #expect(text.contains(" \(section) "), "section \(section)")
        }
        for flag in ["-d", "-f file", "-h", "-n", "-t seconds", "-V"] {
            #expect(text.contains("OPTIONS") && text.components(separatedBy: "OPTIONS")[1].contains(" \(flag) "), "flag \(flag)")
        }
        for status in ["exits 0", "exits 1", "64 (EX_USAGE)"] { #expect(text.contains(status)) }
        #expect(text.contains("RFC 1078"))
    }

    /// Every keyword of the configuration file (Configuration.swift) is described.
    @Test func configurationPage() throws {
        let text = try rendered("man/tcpmuxd.conf.5")
        for keyword in ["allow=networks", "local=networks", "hidden", "message=text", "ack=service", "ack=server",
                        "user=user", "group=group", "proxy=v1", "proxy=v2", "tcpmux", "exec path", "forward host:port", "HELP [allow=NETWORKS] [local=NETWORKS] [off]"] {
            #expect(text.contains(keyword), "keyword \(keyword)")
        }
        #expect(text.contains("RFC 1078"))
    }
}
