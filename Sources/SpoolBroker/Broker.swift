import Hummingbird
import Logging
import PostgresNIO
import SpoolStore

/// Running a broker: where its database is, and its lifetime from start to graceful shutdown.
public enum Broker {
    /// Runs the broker until SIGTERM or SIGINT, then stops the embedded cluster if it started one.
    public static func run(_ configuration: BrokerConfiguration, logger: Logger) async throws {
        try configuration.validate()
        try await withDatabase(configuration, logger: logger) { database in
            let app = try buildApplication(configuration, database: database, logger: logger)
            try await app.runService()
        }
    }

    /// Runs `body` with the database the configuration names: its URL's server, or the embedded
    /// cluster under the data directory, started first and stopped after.
    public static func withDatabase<Result: Sendable>(
        _ configuration: BrokerConfiguration, logger: Logger,
        _ body: (PostgresClient.Configuration) async throws -> Result
    ) async throws -> Result {
        if let url = configuration.databaseURL {
            let database = try DatabaseURL(url)
            logger.info("using PostgreSQL", metadata: ["url": "\(database)"])
            return try await body(database.configuration)
        }
        let cluster = try EmbeddedPostgres(
            dataDirectory: configuration.dataDirectory, binDirectory: configuration.postgresBinDirectory, logger: logger)
        logger.notice(
            "no database URL given: using the embedded PostgreSQL cluster",
            metadata: ["directory": "\(cluster.clusterDirectory)", "psql": "psql '\(cluster.url)'"])
        do {
            let result = try await body(cluster.configuration)
            cluster.stop()
            return result
        } catch {
            cluster.stop()
            throw error
        }
    }

    /// Runs `body` with a migrated store, for admin commands that run beside or without a broker.
    public static func withStore<Result: Sendable>(
        _ configuration: BrokerConfiguration, logger: Logger, _ body: @Sendable (SpoolStore) async throws -> Result
    ) async throws -> Result {
        try await withDatabase(configuration, logger: logger) { database in
            let client = PostgresClient(configuration: database, backgroundLogger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                try await Migrator(client: client).migrate(logger: logger)
                return try await body(SpoolStore(client: client))
            }
        }
    }
}
