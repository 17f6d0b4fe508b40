// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "wanfs",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "wan", targets: ["wan"]),
        .executable(name: "mount.wanfs", targets: ["mount.wanfs"]),
        .executable(name: "wan-bench", targets: ["wan-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.3.0"),
    ],
    targets: [
        // C interop: module maps over system libraries, plus static inline shims
        // for what Swift cannot call directly (variadic functions, macros).
        .systemLibrary(name: "CFuse", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        .target(name: "WanCore", dependencies: [
            .product(name: "TOMLKit", package: "TOMLKit"),
        ]),
        .target(name: "WanSystem", dependencies: ["WanCore", "COpenSSL"]),
        .target(name: "WanSources", dependencies: ["WanCore", "WanSystem", "CCurl"]),
        .target(name: "WanCache", dependencies: [
            "WanCore", "WanSystem", "WanSources",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .target(name: "WanFS", dependencies: [
            "WanCore", "WanSystem", "WanSources", "WanCache", "CFuse",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The sidecar (`wan serve`): HTTP API, metrics, health over the cache engine.
        .target(name: "WanServe", dependencies: [
            "WanCore", "WanSystem", "WanCache",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "wan", dependencies: [
            "WanCore", "WanSystem", "WanSources", "WanCache", "WanFS", "WanServe",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // mount(8) helper: `mount -t wanfs`, fstab, systemd. A synchronous main, because it forks.
        .executableTarget(name: "mount.wanfs", dependencies: [
            "WanFS", "WanCore", "WanSystem",
            .product(name: "Logging", package: "swift-log"),
        ], path: "Sources/mount-wanfs"),

        // Benchmark driver (bench/run.sh): reads through the engine, times it.
        .executableTarget(name: "wan-bench", dependencies: ["WanSources", "WanCore", "WanSystem"], path: "bench/Sources/wan-bench"),

        // Shared by the test targets: the local test servers, scratch folders, small helpers.
        .target(name: "WanTestSupport", dependencies: ["WanCore", "WanSystem"], path: "Tests/WanTestSupport"),
        .testTarget(name: "WanCoreTests", dependencies: ["WanCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "WanSystemTests", dependencies: ["WanSystem"]),
        .testTarget(name: "WanSourcesTests", dependencies: ["WanSources", "WanSystem", "WanTestSupport"]),
        .testTarget(name: "WanCacheTests", dependencies: ["WanCache", "WanTestSupport", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "WanFSTests", dependencies: ["WanFS", "WanCache", "WanCore", "WanTestSupport", "mount.wanfs", "wan"]),
        .testTarget(name: "WanCLITests", dependencies: ["wan", "WanCore", "WanTestSupport"]),
        // The sidecar's routes and middleware in process (HummingbirdTesting), beside the
        // end-to-end tests of `wan serve` in WanCLITests.
        .testTarget(name: "WanServeTests", dependencies: [
            "WanServe", "WanCache", "WanCore", "WanTestSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
    ]
)
