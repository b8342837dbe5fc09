// swift-tools-version:6.0
import PackageDescription

// No dependencies, by design. Every connection pays process start-up, so the
// product imports no Foundation, and its core imports nothing at all: the same
// Sources build the shipped Embedded Swift binary (`make`, build/embedded) and,
// here, the full-runtime one that `swift build`, `swift run` and `swift test` use.
let package = Package(
    name: "in.tcpmuxd",
    products: [
        .executable(name: "in.tcpmuxd", targets: ["tcpmuxd"]),
    ],
    dependencies: [],
    targets: [
        // The wire: request-line parser and reply encoding. Pure Swift: no I/O, no libc.
        .target(name: "TCPMUXProtocol"),
        // The service table, configuration, session decisions, privilege plan,
        // address text and PROXY header. Pure Swift: no I/O, no libc.
        .target(name: "TCPMUXServices", dependencies: ["TCPMUXProtocol"]),
        // The shell's C interface: POSIX headers, errno, the variadic calls,
        // argc and argv as glibc hands them over.
        .target(name: "CSystem"),
        // The shell: carries out the core's decisions (descriptors, deadline,
        // privileges, exec, forward, syslog), through CSystem only.
        .executableTarget(
            name: "tcpmuxd",
            dependencies: ["TCPMUXProtocol", "TCPMUXServices", "CSystem"],
            linkerSettings: [
                // `swift build -c release`, the full-runtime fallback (make full-runtime),
                // is fully static too: a dynamic Swift binary starts about 3 times slower.
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
