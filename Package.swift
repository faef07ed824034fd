// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "spool",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "spool-broker", targets: ["spool-broker"]),
        .executable(name: "spool-worker", targets: ["spool-worker"]),
        .executable(name: "spool", targets: ["spool"]),
        .executable(name: "spool-bench", targets: ["spool-bench"]),
        // What a user's own code builds on; the broker's store and routes are internal to the package (`package` access).
        .library(name: "SpoolClient", targets: ["SpoolClient"]),
        .library(name: "SpoolWorker", targets: ["SpoolWorker"]),
        .library(name: "SpoolCore", targets: ["SpoolCore"]),
    ],
    // Exact versions: Package.resolved is not kept in git, so these are what every clean build resolves.
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "3.12.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", exact: "1.8.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", exact: "0.2.0"),
    ],
    targets: [
        // Wire types, errors and the job state machine: no NIO, no Postgres.
        .target(name: "SpoolCore"),
        // The product's SQL: migrator, one file per table, the embedded cluster (spool-bench and the
        // tests write rows of their own to set up scenarios).
        .target(
            name: "SpoolStore",
            dependencies: [
                "SpoolCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            resources: [.embedInCode("Migrations")]
        ),
        // buildApplication(config): routes, auth, error mapping.
        .target(
            name: "SpoolBroker",
            dependencies: [
                "SpoolCore", "SpoolStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            resources: [.embedInCode("OpenAPI"), .embedInCode("UI")]
        ),
        .executableTarget(
            name: "spool-broker",
            dependencies: [
                "SpoolBroker", "SpoolStore", "SpoolCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The worker SDK: the lease loop, heartbeats, drain; the --exec and --forward handlers.
        .target(
            name: "SpoolWorker",
            dependencies: [
                "SpoolCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "spool-worker",
            dependencies: [
                "SpoolWorker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The client SDK (Together's Queue API, streams, operations) and the command line on it.
        .target(
            name: "SpoolClient",
            dependencies: [
                "SpoolCore",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .executableTarget(
            name: "spool",
            dependencies: [
                "SpoolClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The benchmark: the database floor, submit, drain, pickup, status, depth, memory, churn.
        .executableTarget(
            name: "spool-bench",
            dependencies: [
                "SpoolCore", "SpoolStore", "SpoolWorker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The README's Swift worker, built with the package so it cannot rot.
        .executableTarget(
            name: "spool-example-worker",
            dependencies: [
                "SpoolWorker",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Examples/SwiftWorker"
        ),
        .testTarget(name: "SpoolCoreTests", dependencies: ["SpoolCore"]),
        .testTarget(
            name: "SpoolIntegrationTests",
            dependencies: [
                "SpoolCore", "SpoolStore", "SpoolBroker", "SpoolWorker", "SpoolClient",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
    ]
)
