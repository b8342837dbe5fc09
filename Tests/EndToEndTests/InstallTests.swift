// What `make install` puts on a machine: the binary, the manual pages, the examples.
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite(needs([.make])) struct InstallTests {
    /// Every file `make install` puts under DESTDIR, mode and all.
    static let installed: [(path: String, mode: mode_t)] = [
        ("sbin/in.tcpmuxd", 0o755),
        ("share/man/man8/in.tcpmuxd.8", 0o644),
        ("share/man/man5/tcpmuxd.conf.5", 0o644),
        ("share/doc/in.tcpmuxd/README.md", 0o644),
        ("share/doc/in.tcpmuxd/inetd.conf.example", 0o644),
        ("share/doc/in.tcpmuxd/tcpmuxd.conf.example", 0o644),
        ("share/doc/in.tcpmuxd/xinetd.d/tcpmux", 0o644),
        ("share/doc/in.tcpmuxd/systemd/tcpmux.socket", 0o644),
        ("share/doc/in.tcpmuxd/systemd/tcpmux@.service", 0o644),
    ]

    /// All regular files under `root`, relative to it.
    func files(under root: String) -> [String] {
        let enumerator = FileManager.default.enumerator(atPath: root)
        var found: [String] = []
        while let path = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(root)/\(path)", isDirectory: &isDirectory), !isDirectory.boolValue {
                found.append(path)
            }
        }
        return found.sorted()
    }

    @Test func installIntoDestdirThenUninstall() throws {
        let make = try Tool.make.require()
        var template = Array("/tmp/tcpmuxd-destdir.XXXXXX".utf8CString)
        let destdir = String(cString: try #require(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: destdir) }
        let prefix = "/opt/tcpmuxd"
        // BINARY: the binary under test, so that the test builds nothing.
        let variables = ["DESTDIR=\(destdir)", "PREFIX=\(prefix)", "BINARY=\(serverBinary)"]

        let install = try runClient([make, "-s", "-C", packageRoot, "install"] + variables, input: "", timeout: 30)
        #expect(install.status == 0, "make install: \(install.stderr)")
        let root = destdir + prefix
        #expect(files(under: destdir) == Self.installed.map { String(prefix.dropFirst()) + "/" + $0.path }.sorted())
        for (path, mode) in Self.installed {
            var status = stat()
            #expect(stat("\(root)/\(path)", &status) == 0, "\(path) installed")
            #expect(status.st_mode & 0o7777 == mode, "\(path) mode \(String(status.st_mode & 0o7777, radix: 8))")
        }
        #expect(FileManager.default.contentsEqual(atPath: "\(root)/sbin/in.tcpmuxd", andPath: serverBinary))
        // The examples and pages name the installed binary, under PREFIX.
        let inetdLine = try readText("\(root)/share/doc/in.tcpmuxd/inetd.conf.example")
        #expect(inetdLine.contains("nobody  \(prefix)/sbin/in.tcpmuxd  in.tcpmuxd -f /etc/tcpmuxd.conf"))
        #expect(try readText("\(root)/share/doc/in.tcpmuxd/systemd/tcpmux@.service").contains("ExecStart=-\(prefix)/sbin/in.tcpmuxd "))
        for (path, _) in Self.installed where !path.hasPrefix("sbin/") {
            #expect(!(try readText("\(root)/\(path)")).contains("/usr/local/"), "\(path) still names /usr/local")
        }
        // The installed binary is the server.
        let version = try runClient(["\(root)/sbin/in.tcpmuxd", "-V"], input: "")
        #expect(version.stdout.hasPrefix("in.tcpmuxd "))

        let uninstall = try runClient([make, "-s", "-C", packageRoot, "uninstall"] + variables, input: "", timeout: 30)
        #expect(uninstall.status == 0, "make uninstall: \(uninstall.stderr)")
        #expect(files(under: destdir) == [], "left behind")
        #expect(!FileManager.default.fileExists(atPath: "\(root)/share/doc/in.tcpmuxd"))
    }

    /// `make` alone builds the shipped binary, Embedded Swift (dry run: nothing is built).
    @Test func defaultTargetBuildsEmbedded() throws {
        let run = try runClient([try Tool.make.require(), "-n", "-C", packageRoot], input: "")
        #expect(run.stdout.contains("build/embedded .build/embedded/in.tcpmuxd"))
        #expect(!run.stdout.contains("swift build"))
    }

    /// The fallback builds the full-runtime static binary, and `BINARY=` makes
    /// `make install` build (when missing) and install that one (dry runs).
    @Test func fullRuntimeFallback() throws {
        let make = try Tool.make.require()
        let build = try runClient([make, "-n", "-C", packageRoot, "full-runtime"], input: "")
        #expect(build.stdout.contains("swift build -c release --product in.tcpmuxd"))
        let missing = "/nonexistent/in.tcpmuxd"
        let install = try runClient([make, "-n", "-C", packageRoot, "install", "BINARY=.build/release/in.tcpmuxd",
                                     "DESTDIR=\(missing)"], input: "")
        #expect(install.stdout.contains("install -m 755 .build/release/in.tcpmuxd \(missing)/usr/local/sbin/in.tcpmuxd"))
        #expect(!install.stdout.contains("build/embedded"))
    }

    /// A toolchain without Embedded Swift: `make` fails, naming the fallback and
    /// how to choose it, at once (no full build is started behind the user's back).
    @Test func toolchainWithoutEmbeddedNamesTheFallback() throws {
        var template = Array("/tmp/tcpmuxd-toolchain.XXXXXX".utf8CString)
        let toolchain = String(cString: try #require(mkdtemp(&template)))
        defer { try? FileManager.default.removeItem(atPath: toolchain) }
        // The real compiler, but beside no lib/swift/embedded.
        let directories: [String] = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        let candidates: [String] = (directories + ["/opt/swift/usr/bin"]).map { directory in directory + "/swiftc" }
        let compiler = try #require(candidates.first { candidate in access(candidate, X_OK) == 0 })
        try check("symlink", symlink(compiler, "\(toolchain)/swiftc"))
        let run = try runClient([try Tool.make.require(), "-s", "-C", packageRoot, "SWIFTC=\(toolchain)/swiftc"],
                                input: "", timeout: 30)
        #expect(run.status != 0)
        #expect(run.stderr.contains("cannot build Embedded Swift"), "\(run.stderr)")
        #expect(run.stderr.contains("make full-runtime"))
        #expect(run.stderr.contains("make install BINARY=.build/release/in.tcpmuxd"))
    }
}

/// The README's Deploying section quotes the shipped examples: the quotes
/// must not drift from the files (white space aside).
@Test func readmeQuotesTheShippedExamples() throws {
    func folded(_ text: some StringProtocol) -> String { text.split(whereSeparator: \.isWhitespace).joined(separator: " ") }
    let readme = try readText("\(packageRoot)/README.md")
    let deploying = folded(try #require(readme.components(separatedBy: "## Deploying").last))
    let inetdLine = try #require(try Example.text(Example.inetdConf).split(separator: "\n").first { !$0.hasPrefix("#") })
    #expect(deploying.contains(folded(inetdLine)))
    let xinetdBlock = try Example.text(Example.xinetdService).split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
    #expect(deploying.contains(folded(xinetdBlock.joined(separator: "\n"))))
    for key in ["ExecStart", "StandardInput", "StandardOutput", "StandardError"] {
        let value = try Example.unitValue(key, in: try Example.text(Example.systemdService), of: Example.systemdService)
        #expect(deploying.contains("\(key)=\(value)"))
    }
}
