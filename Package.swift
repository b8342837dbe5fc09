// swift-tools-version:6.0
import PackageDescription

// No dependencies, by design. The executable imports Glibc only (no Foundation):
// every connection pays process start-up, and Foundation costs 4–10 ms of it.
let package = Package(
    name: "in.tcpmuxd",
    products: [
        .executable(name: "in.tcpmuxd", targets: ["tcpmuxd"]),
    ],
    dependencies: [],
    targets: [
        // The wire: request-line parser and reply encoding. Pure, no I/O.
        .target(name: "TCPMUXProtocol"),
        // The service table and the session's decisions. Pure, no I/O.
        .target(name: "TCPMUXServices", dependencies: ["TCPMUXProtocol"]),
        // The shell's C interface: POSIX headers, errno, the variadic calls,
        // argc and argv as glibc hands them over.
        .target(name: "CSystem"),
        // The thin shell: file descriptors, deadline, syslog.
        .executableTarget(
            name: "tcpmuxd",
            dependencies: ["TCPMUXProtocol", "TCPMUXServices", "CSystem"],
            linkerSettings: [
                // The release binary is fully static: start-up is paid per connection
                // (static 1.2 ms vs dynamic 5 ms, ../shared/REFERENCES.md).
                .unsafeFlags(["-static-executable", "-Xlinker", "--gc-sections", "-Xlinker", "-s"],
                             .when(configuration: .release)),
            ]
        ),
        .testTarget(name: "TCPMUXTests", dependencies: ["TCPMUXProtocol", "TCPMUXServices"],
                    exclude: ["Configurations"]),
        // Depends on the executable so `swift test` builds the binary it spawns.
        .testTarget(name: "EndToEndTests", dependencies: ["tcpmuxd"]),
    ]
)
