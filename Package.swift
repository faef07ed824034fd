// swift-tools-version:6.0
import PackageDescription

// The products the targets depend on, named once.
let postgres: Target.Dependency = .product(name: "PostgresNIO", package: "postgres-nio")
let logging: Target.Dependency = .product(name: "Logging", package: "swift-log")
let crypto: Target.Dependency = .product(name: "Crypto", package: "swift-crypto")
let nioSSL: Target.Dependency = .product(name: "NIOSSL", package: "swift-nio-ssl")
let nioCore: Target.Dependency = .product(name: "NIOCore", package: "swift-nio")
let nioPosix: Target.Dependency = .product(name: "NIOPosix", package: "swift-nio")
let nioConcurrency: Target.Dependency = .product(name: "NIOConcurrencyHelpers", package: "swift-nio")
let hummingbird: Target.Dependency = .product(name: "Hummingbird", package: "hummingbird")
let hummingbirdCore: Target.Dependency = .product(name: "HummingbirdCore", package: "hummingbird")
let hummingbirdTLS: Target.Dependency = .product(name: "HummingbirdTLS", package: "hummingbird")
let nioHTTP1: Target.Dependency = .product(name: "NIOHTTP1", package: "swift-nio")
let httpClient: Target.Dependency = .product(name: "AsyncHTTPClient", package: "async-http-client")
let prometheus: Target.Dependency = .product(name: "Prometheus", package: "swift-prometheus")
let serviceLifecycle: Target.Dependency = .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let httpTypes: Target.Dependency = .product(name: "HTTPTypes", package: "swift-http-types")
let argumentParser: Target.Dependency = .product(name: "ArgumentParser", package: "swift-argument-parser")
let histogram: Target.Dependency = .product(name: "Histogram", package: "hdrhistogram-swift")
let hummingbirdTesting: Target.Dependency = .product(name: "HummingbirdTesting", package: "hummingbird")
/// What a target that calls the broker over HTTP(S) takes.
let httpClientStack: [Target.Dependency] = [httpClient, nioCore, nioHTTP1, nioSSL]

/// Every package, by its GitHub repository, at the one version the build uses.
let pinned = [
    ("hummingbird-project/hummingbird", "2.28.1"), ("vapor/postgres-nio", "1.33.2"), ("swift-server/async-http-client", "1.37.0"),
    ("apple/swift-argument-parser", "1.8.2"), ("apple/swift-log", "1.16.2"), ("apple/swift-crypto", "3.12.3"),
    ("swift-server/swift-service-lifecycle", "2.13.0"), ("apple/swift-nio-ssl", "2.37.6"), ("apple/swift-nio", "2.101.3"),
    ("apple/swift-http-types", "1.8.0"), ("swift-server/swift-prometheus", "2.4.1"), ("HdrHistogram/hdrhistogram-swift", "0.2.0"),
]

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
    dependencies: pinned.map { repository, version in .package(url: "https://github.com/\(repository).git", exact: Version(stringLiteral: version)) },
    targets: [
        // Wire types, errors and the job state machine: no NIO, no Postgres.
        .target(name: "SpoolCore"),
        // The product's SQL: migrator, one file per table, the embedded cluster (spool-bench and the
        // tests write rows of their own to set up scenarios).
        .target(
            name: "SpoolStore",
            dependencies: ["SpoolCore", postgres, logging, crypto, nioSSL, nioCore, nioPosix, nioConcurrency],
            resources: [.embedInCode("Migrations")]
        ),
        // buildApplication(config): routes, auth, error mapping.
        .target(
            name: "SpoolBroker",
            dependencies: [
                "SpoolCore", "SpoolStore", hummingbird, hummingbirdCore, hummingbirdTLS, nioSSL, nioPosix, nioHTTP1, httpClient, prometheus, postgres,
                serviceLifecycle, logging, crypto, nioCore, nioConcurrency, httpTypes,
            ],
            resources: [.embedInCode("OpenAPI"), .embedInCode("UI")]
        ),
        .executableTarget(name: "spool-broker", dependencies: ["SpoolBroker", "SpoolStore", "SpoolCore", argumentParser]),
        // The worker SDK: the lease loop, heartbeats, drain; the --exec and --forward handlers.
        .target(name: "SpoolWorker", dependencies: ["SpoolCore", logging, serviceLifecycle] + httpClientStack),
        .executableTarget(name: "spool-worker", dependencies: ["SpoolWorker", argumentParser, serviceLifecycle]),
        // The client SDK (Together's Queue API, streams, operations) and the command line on it.
        .target(name: "SpoolClient", dependencies: ["SpoolCore"] + httpClientStack),
        .executableTarget(name: "spool", dependencies: ["SpoolClient", argumentParser]),
        // The benchmark: the database floor, submit, drain, pickup, status, depth, memory, churn.
        .executableTarget(
            name: "spool-bench",
            dependencies: ["SpoolCore", "SpoolStore", "SpoolWorker", argumentParser, httpClient, histogram, postgres, nioCore, logging]),
        // The README's Swift worker, built with the package so it cannot rot.
        .executableTarget(
            name: "spool-example-worker",
            dependencies: ["SpoolWorker", serviceLifecycle],
            path: "Examples/SwiftWorker"
        ),
        .testTarget(name: "SpoolCoreTests", dependencies: ["SpoolCore"]),
        .testTarget(
            name: "SpoolIntegrationTests",
            dependencies: [
                "SpoolCore", "SpoolStore", "SpoolBroker", "SpoolWorker", "SpoolClient", hummingbirdTesting, httpClient, httpTypes, nioCore, nioHTTP1,
                nioPosix, postgres, crypto, nioSSL,
            ]
        ),
    ]
)
