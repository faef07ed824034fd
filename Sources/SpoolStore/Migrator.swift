import Logging
import PostgresNIO

/// One numbered schema change from `migrations/`, carried in the binary.
package struct Migration: Sendable {
    package let version: Int
    package let name: String
    package let sql: String
}

/// Applies the schema in `migrations/` to a database, safely from many brokers at once.
///
/// Every migration runs in its own transaction under a transaction-scoped advisory lock, so
/// brokers that start together queue up on the lock: the first applies, the rest find nothing
/// left to do.
package struct Migrator: Sendable {
    /// Every migration, in order. `migrations/` is the source; a test checks this list matches it.
    package static let all: [Migration] = [
        Migration(version: 1, name: "jobs", sql: String(decoding: PackageResources._001_jobs_sql, as: UTF8.self)),
        Migration(version: 2, name: "idempotency_keys", sql: String(decoding: PackageResources._002_idempotency_keys_sql, as: UTF8.self)),
        Migration(version: 3, name: "api_keys", sql: String(decoding: PackageResources._003_api_keys_sql, as: UTF8.self)),
        Migration(version: 4, name: "worker_protocol", sql: String(decoding: PackageResources._004_worker_protocol_sql, as: UTF8.self)),
        Migration(version: 5, name: "fal_queue_and_streams", sql: String(decoding: PackageResources._005_fal_queue_and_streams_sql, as: UTF8.self)),
        Migration(version: 6, name: "webhooks", sql: String(decoding: PackageResources._006_webhooks_sql, as: UTF8.self)),
        Migration(
            version: 7, name: "workers_and_table_health", sql: String(decoding: PackageResources._007_workers_and_table_health_sql, as: UTF8.self)),
        Migration(version: 8, name: "files_and_batches", sql: String(decoding: PackageResources._008_files_and_batches_sql, as: UTF8.self)),
        Migration(version: 9, name: "hardening", sql: String(decoding: PackageResources._009_hardening_sql, as: UTF8.self)),
        Migration(version: 10, name: "key_scopes_and_audit", sql: String(decoding: PackageResources._010_key_scopes_and_audit_sql, as: UTF8.self)),
        Migration(
            version: 11, name: "tenants_and_fair_share", sql: String(decoding: PackageResources._011_tenants_and_fair_share_sql, as: UTF8.self)),
        Migration(version: 12, name: "runpod", sql: String(decoding: PackageResources._012_runpod_sql, as: UTF8.self)),
        Migration(version: 13, name: "dashboard", sql: String(decoding: PackageResources._013_dashboard_sql, as: UTF8.self)),
    ]

    /// Key of the advisory lock that serialises migrators ("spool" in ASCII).
    static let advisoryLockKey: Int64 = 0x73_70_6f_6f_6c

    let client: PostgresClient
    let migrations: [Migration]

    package init(client: PostgresClient, migrations: [Migration] = Migrator.all) {
        self.client = client
        self.migrations = migrations
    }

    /// Applies the pending migrations and returns the versions it applied.
    @discardableResult
    package func migrate(logger: Logger) async throws -> [Int] {
        try await client.withConnection { connection in
            try await applyPending(on: connection, logger: logger)
        }
    }

    /// The versions recorded as applied, in order; empty for a database Spool never touched.
    package func appliedVersions(logger: Logger) async throws -> [Int] {
        try await Self.appliedVersions(on: client, logger: logger)
    }

    private func applyPending(on connection: PostgresConnection, logger: Logger) async throws -> [Int] {
        // Nothing to apply (every broker start but the first after an upgrade): no lock taken, so
        // many brokers starting at once do not queue through it one transaction at a time.
        let recorded = Set(try await Self.appliedVersions(on: connection, logger: logger))
        if migrations.allSatisfy({ recorded.contains($0.version) }) { return [] }
        // Each step is one transaction that first takes a transaction-scoped advisory lock and
        // then looks at what is applied: migrators on many brokers queue up on it, and it works
        // through a pooler in transaction mode (a session lock would stay on a pooled server connection).
        try await connection.transaction(logger: logger) { transaction in
            try await transaction.run("SELECT pg_advisory_xact_lock(\(Self.advisoryLockKey))", logger: logger)
            try await transaction.run(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer     PRIMARY KEY,
                    name       text        NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """, logger: logger)
        }
        var applied: [Int] = []
        for migration in migrations {
            let didApply = try await connection.transaction(logger: logger) { transaction -> Bool in
                try await transaction.run("SELECT pg_advisory_xact_lock(\(Self.advisoryLockKey))", logger: logger)
                guard !(try await Self.appliedVersions(on: transaction, logger: logger)).contains(migration.version) else { return false }
                for statement in SQLStatements.split(migration.sql) {
                    try await transaction.run(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                try await transaction.run(
                    "INSERT INTO schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
                    logger: logger)
                return true
            }
            guard didApply else { continue }
            logger.info("applied migration", metadata: ["version": "\(migration.version)", "name": "\(migration.name)"])
            applied.append(migration.version)
        }
        return applied
    }

    private static func appliedVersions(on database: some PostgresQueryable, logger: Logger) async throws -> [Int] {
        let exists =
            try await database.run("SELECT to_regclass('schema_migrations') IS NOT NULL", logger: logger)
            .collect().first?.decode(Bool.self) ?? false
        guard exists else { return [] }
        var versions: [Int] = []
        for try await version in try await database.run("SELECT version FROM schema_migrations ORDER BY version", logger: logger)
            .decode(Int.self)
        {
            versions.append(version)
        }
        return versions
    }
}
