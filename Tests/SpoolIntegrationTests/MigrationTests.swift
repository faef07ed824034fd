import Foundation
import PostgresNIO
import Testing

@testable import SpoolStore

@Suite struct MigrationTests {
    @Test func appliesFromEmptyAndASecondRunChangesNothing() async throws {
        try await TestDatabase.withFreshDatabase { database in
            try await TestDatabase.withClient(database: database) { client in
                let migrator = Migrator(client: client)
                #expect(try await migrator.appliedVersions(logger: TestDatabase.logger) == [])
                #expect(try await migrator.migrate(logger: TestDatabase.logger) == Migrator.all.map(\.version))
                let schema = try await schemaFingerprint(client)
                #expect(schema.contains { $0.hasPrefix("jobs_pending_claim_order:i:") })
                #expect(try await migrator.migrate(logger: TestDatabase.logger) == [])
                #expect(try await schemaFingerprint(client) == schema)
                #expect(try await migrator.appliedVersions(logger: TestDatabase.logger) == Migrator.all.map(\.version))
            }
        }
    }

    @Test func concurrentMigratorsApplyEachMigrationOnce() async throws {
        try await TestDatabase.withFreshDatabase { database in
            try await TestDatabase.withClient(database: database) { first in
                try await TestDatabase.withClient(database: database) { second in
                    async let a = Migrator(client: first).migrate(logger: TestDatabase.logger)
                    async let b = Migrator(client: second).migrate(logger: TestDatabase.logger)
                    let (appliedByA, appliedByB) = try await (a, b)
                    #expect((appliedByA + appliedByB).sorted() == Migrator.all.map(\.version))
                    #expect(try await Migrator(client: first).appliedVersions(logger: TestDatabase.logger) == Migrator.all.map(\.version))
                }
            }
        }
    }

    @Test func theEmbeddedListMatchesTheMigrationsFolder() throws {
        let folder = SpawnedProcess.packageRoot + "/migrations"
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".sql") }.sorted()
        #expect(files == Migrator.all.map { String(format: "%04d_%@.sql", $0.version, $0.name) })
        for migration in Migrator.all {
            let text = try String(contentsOfFile: folder + String(format: "/%04d_%@.sql", migration.version, migration.name), encoding: .utf8)
            #expect(text == migration.sql, "migration \(migration.version) in the binary differs from the folder")
        }
    }

    @Test func splitsStatementsButNotQuotedSemicolons() {
        let sql = """
            -- a comment; with a semicolon
            CREATE TABLE t (a text DEFAULT 'x;y');
            /* block; comment */ SELECT "odd;name" FROM t;
            CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
            -- trailing comment only
            """
        #expect(
            SQLStatements.split(sql) == [
                "-- a comment; with a semicolon\nCREATE TABLE t (a text DEFAULT 'x;y')",
                "/* block; comment */ SELECT \"odd;name\" FROM t",
                "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
            ])
    }

    /// Two broker processes started at the same moment on one empty database both come up.
    @Test func twoBrokersStartTogetherOnAnEmptyDatabase() async throws {
        try await TestDatabase.withFreshDatabase { database in
            let url = TestDatabase.url(database: database)
            async let first = BrokerProcess.start(databaseURL: url)
            async let second = BrokerProcess.start(databaseURL: url)
            let brokers = try await [first, second]
            for broker in brokers {
                #expect(try await HTTP.get(broker.baseURL + "/healthz").status == 200)
            }
            let id = try await HTTP.submit(broker: brokers[0], model: "both/started")
            let status = try await HTTP.get(brokers[1].baseURL + "/v1/queue/status?model=both%2Fstarted&request_id=\(id)")
            #expect(status.json.objectValue?["status"] == "pending")
            for broker in brokers { #expect(await broker.process.stop() == 0) }
            let versions = try await TestDatabase.withClient(database: database) { client in
                try await Migrator(client: client).appliedVersions(logger: TestDatabase.logger)
            }
            #expect(versions == Migrator.all.map(\.version))
        }
    }

    /// Without an API key the broker is open, so it refuses any address but loopback.
    @Test func anOpenBrokerRefusesToListenBeyondLoopback() async throws {
        let database = try await TestDatabase.migrated()
        let process = try SpawnedProcess([
            SpawnedProcess.buildDirectory + "/spool-broker", "--database-url", TestDatabase.url(database: database),
            "--host", "0.0.0.0", "--port", "0",
        ])
        #expect(try await process.wait(timeout: .seconds(30)) != 0)
        #expect(process.output.contains("No API key is configured"))
        #expect(process.output.contains("loopback only"))
    }

    private func schemaFingerprint(_ client: PostgresClient) async throws -> [String] {
        let rows = try await client.query(
            """
            SELECT c.relname || ':' || c.relkind::text || ':' || coalesce(pg_get_indexdef(c.oid), '')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' ORDER BY 1
            """, logger: TestDatabase.logger)
        var names: [String] = []
        for try await name in rows.decode(String.self) { names.append(name) }
        return names
    }
}
