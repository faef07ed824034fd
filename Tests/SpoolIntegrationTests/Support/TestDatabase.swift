import Foundation
import Logging
import PostgresNIO

@testable import SpoolStore

/// The PostgreSQL server the integration tests use: `SPOOL_TEST_DATABASE_URL` if set, otherwise
/// an embedded cluster under /tmp, started once per test process and stopped at exit.
enum TestDatabase {
    static let logger: Logger = {
        var logger = Logger(label: "spool-tests")
        logger.logLevel = ProcessInfo.processInfo.environment["SPOOL_TEST_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
        return logger
    }()

    /// A cluster this process started, stopped by `atexit`.
    nonisolated(unsafe) static var cluster: EmbeddedPostgres?

    /// A URL template: `url(database:)` fills in the database name.
    static let server: URLComponents = {
        if let url = ProcessInfo.processInfo.environment["SPOOL_TEST_DATABASE_URL"], !url.isEmpty {
            return URLComponents(string: url)!
        }
        do {
            // One cluster per checkout: test runs of two checkouts must not stop each other's server.
            let checkout = SpawnedProcess.packageRoot.utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
            let embedded = try EmbeddedPostgres(
                dataDirectory: "/tmp/spool-test-postgres-\(getuid())-\(String(checkout, radix: 16))",
                // Suites run in parallel, some with three brokers of 20 connections each.
                maxConnections: 500, logger: logger)
            cluster = embedded
            atexit { TestDatabase.cluster?.stop() }
            return URLComponents(string: embedded.url)!
        } catch {
            fatalError("The integration tests need PostgreSQL: \(error). Install it (apt-get install postgresql) or set SPOOL_TEST_DATABASE_URL.")
        }
    }()

    static func url(database: String) -> String {
        var components = server
        components.path = "/" + database
        return components.string!
    }

    static func configuration(database: String) -> PostgresClient.Configuration {
        try! DatabaseURL(url(database: database)).configuration
    }

    /// The database most tests share, created empty and migrated once per test process.
    static let shared = "spool_test_\(getpid())"
    private static let sharedReady = Task<Void, any Error> {
        try await dropLeftovers()
        try await recreate(shared)
        _ = try await withClient(database: shared) { client in
            try await Migrator(client: client).migrate(logger: logger)
        }
    }

    /// The shared database's name, once it is migrated.
    static func migrated() async throws -> String {
        try await sharedReady.value
        return shared
    }

    /// A new empty database; `body` runs with its name, and it is dropped afterwards.
    static func withFreshDatabase<Result: Sendable>(
        migrated: Bool = false, _ body: (String) async throws -> Result
    ) async throws -> Result {
        try await sharedReady.value
        let name = "spool_fresh_\(getpid())_\(UUID().uuidString.prefix(8).lowercased())"
        try await recreate(name)
        if migrated {
            try await withClient(database: name) { client in _ = try await Migrator(client: client).migrate(logger: logger) }
        }
        do {
            let result = try await body(name)
            try await drop(name)
            return result
        } catch {
            try? await drop(name)
            throw error
        }
    }

    /// Runs `body` with a running pool on `database`.
    static func withClient<Result: Sendable>(
        database: String, _ body: (PostgresClient) async throws -> Result
    ) async throws -> Result {
        let client = PostgresClient(configuration: configuration(database: database), backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// Runs `body` with a store on the shared, migrated database.
    static func withStore<Result: Sendable>(_ body: (Store) async throws -> Result) async throws -> Result {
        try await withClient(database: try await migrated()) { client in try await body(Store(client: client)) }
    }

    /// Runs `body` with a store on a new migrated database of its own, for tests that leave many
    /// leased jobs behind: on the shared one, every other test's broker would spend its sweeps requeuing them.
    static func withFreshStore<Result: Sendable>(_ body: (Store) async throws -> Result) async throws -> Result {
        try await withFreshDatabase(migrated: true) { name in
            try await withClient(database: name) { client in try await body(Store(client: client)) }
        }
    }

    private static func recreate(_ name: String) async throws {
        _ = try await withClient(database: "postgres") { client in
            try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
    }

    private static func drop(_ name: String) async throws {
        _ = try await withClient(database: "postgres") { client in
            try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"), logger: logger)
        }
    }

    /// Drops the databases of earlier test processes that died before cleaning up (their pid is gone).
    private static func dropLeftovers() async throws {
        let names = try await withClient(database: "postgres") { client in
            var names: [String] = []
            let rows = try await client.query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'spool\\_test\\_%' OR datname LIKE 'spool\\_fresh\\_%'",
                logger: logger)
            for try await name in rows.decode(String.self) { names.append(name) }
            return names
        }
        for name in names {
            let pid = name.split(separator: "_").dropFirst(2).first.flatMap { pid_t($0) }
            if let pid, pid != getpid(), kill(pid, 0) != 0 { try await drop(name) }
        }
    }
}

/// A model name no other test uses: tests share a database and are isolated by data.
func uniqueModel(_ prefix: String = "test") -> String {
    "\(prefix)/\(UUID().uuidString.prefix(12).lowercased())"
}
