// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ferry",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ferry", targets: ["ferry"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // System-library shims: one module map and shim header each; C types stay internal.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CYAML", pkgConfig: "yaml-0.1", providers: [.apt(["libyaml-dev"])]),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),

        // Linux system calls Swift's Glibc module does not export (renameat2); header-only.
        .target(name: "CFerrySys"),
        // `ferry run` records a SIGTERM/SIGINT that arrives before the service group listens (a constructor).
        .target(name: "CFerryStart"),
        // The lowest Swift module: a failed system call with its Errno and advice (SystemError), and a
        // local file's identity and version (FileIdentity, FileVersion), shared by every module above.
        .target(name: "FerrySystem", dependencies: [
            .product(name: "SystemPackage", package: "swift-system"),
        ]),
        // Glob patterns shared by the rules validator and the watcher; depends on nothing.
        .target(name: "FerryGlob"),
        .target(name: "FerryConfig", dependencies: [
            "CYAML", "FerryGlob",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "FerryWatch", dependencies: [
            "CFerrySys", "FerryGlob", "FerrySystem",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SystemPackage", package: "swift-system"),
        ]),
        .target(name: "FerryAWS", dependencies: [
            "CCurl", "CCrypto", "CFerrySys", "FerrySystem",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "FerryStore", dependencies: [
            "CSQLite", "FerrySystem",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "FerryEngine", dependencies: [
            "CFerrySys", "FerryConfig", "FerryGlob", "FerrySystem", "FerryWatch", "FerryAWS", "FerryStore",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "SystemPackage", package: "swift-system"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .executableTarget(name: "ferry", dependencies: [
            "CFerryStart", "FerryEngine", "FerryConfig",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),

        // bench/watch: FolderWatcher over a big tree, measured against inotifywait by bench/watch/run.py.
        .executableTarget(name: "ferry-watch-bench", dependencies: [
            "FerryWatch",
            .product(name: "Logging", package: "swift-log"),
        ], path: "bench/watch/Sources"),

        // bench/poll: FolderWatcher's poll mode over a big tree, measured against fswatch's poll_monitor by bench/poll/run.py.
        .executableTarget(name: "ferry-poll-bench", dependencies: [
            "FerryWatch",
            .product(name: "Logging", package: "swift-log"),
        ], path: "bench/poll/Sources"),

        // bench/upload: FerryAWS uploads vs aws-cli and rclone, measured by bench/upload/run.py.
        .executableTarget(name: "ferry-upload-bench", dependencies: [
            "FerryAWS",
            .product(name: "Logging", package: "swift-log"),
        ], path: "bench/upload/Sources"),

        // bench/journal: the pipeline's journal writes, timed while status queries or pruning share the journal (bench/journal/run.py).
        .executableTarget(name: "ferry-journal-bench", dependencies: [
            "FerryStore", "FerrySystem", "FerryEngine", "FerryConfig",
            .product(name: "Logging", package: "swift-log"),
        ], path: "bench/journal/Sources"),

        // Shared by the test targets: starting the emulator and sshd, temp folders, running the binary.
        .target(name: "FerryTestSupport", path: "Tests/FerryTestSupport"),

        .testTarget(name: "FerryConfigTests", dependencies: ["FerryConfig", "FerryTestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "FerryGlobTests", dependencies: ["FerryGlob"]),
        .testTarget(name: "FerrySystemTests", dependencies: ["FerrySystem", "FerryTestSupport",
                                                            .product(name: "SystemPackage", package: "swift-system")]),
        .testTarget(name: "FerryWatchTests", dependencies: ["FerryWatch", "FerryGlob", "FerrySystem", "FerryTestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "FerryAWSTests", dependencies: ["FerryAWS", "CCrypto", "FerrySystem", "FerryTestSupport", .product(name: "Logging", package: "swift-log")],
                    exclude: ["Scripts"]),
        .testTarget(name: "FerryStoreTests", dependencies: ["FerryStore", "FerrySystem", "FerryTestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "FerryEngineTests", dependencies: ["FerryEngine", "CFerrySys", "FerryAWS", "FerryConfig", "FerryGlob", "FerryStore", "FerrySystem", "FerryTestSupport", "FerryWatch",
                                                            .product(name: "Logging", package: "swift-log"),
                                                            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
        .testTarget(name: "EndToEndTests", dependencies: ["FerryTestSupport", "FerryStore", "FerrySystem", "FerryAWS", "CCrypto", .product(name: "Logging", package: "swift-log")]),
    ],
    swiftLanguageModes: [.v6]
)
