import Hummingbird
import Logging
import PostgresNIO
import ServiceLifecycle
import SpoolStore

/// Running a broker: where its database is, and its lifetime from start to graceful shutdown.
package enum Broker {
    /// Runs the broker until SIGTERM or SIGINT, then stops the embedded cluster if it started one.
    ///
    /// On SIGTERM the broker stops accepting connections, answers its open long-polls (empty) and
    /// ends its status streams at once, and lets requests under way finish (their group commits
    /// included) for at most `shutdownGraceSeconds`; what is still running then is cancelled.
    package static func run(_ configuration: BrokerConfiguration, logger: Logger) async throws {
        try configuration.validate()
        PreparedStatements.sendUnnamed(configuration.unnamedStatements)
        if configuration.unnamedStatements, configuration.listenDatabaseURL == nil {
            logger.warning(
                "--unnamed-statements without --listen-database-url: through a transaction pooler LISTEN does not work, and waiting workers and status streams hear of changes by the once-a-second poll"
            )
        }
        try await withDatabase(configuration, logger: logger) { database in
            try await withDatabase(url: configuration.listenDatabaseURL, logger: logger) { listenDatabase in
                let app = try buildApplication(configuration, database: database, listenDatabase: listenDatabase, logger: logger)
                var group = ServiceGroupConfiguration(services: [.init(service: app)], logger: logger)
                group.gracefulShutdownSignals = [.sigterm, .sigint]
                group.maximumGracefulShutdownDuration = .seconds(configuration.shutdownGraceSeconds)
                // A task that ignores cancellation too would keep the process forever: better to end it.
                group.maximumCancellationDuration = .seconds(10)
                try await ServiceGroup(configuration: group).run()
            }
        }
    }

    /// Runs `body` with the database the configuration names: its URL's server, or the embedded
    /// cluster under the data directory, started first and stopped after.
    package static func withDatabase<Result: Sendable>(
        _ configuration: BrokerConfiguration, logger: Logger,
        _ body: (PostgresClient.Configuration) async throws -> Result
    ) async throws -> Result {
        if let url = configuration.databaseURL {
            return try await withDatabase(url: url, logger: logger) { try await body($0!) }
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

    /// Runs `body` with the configuration for `url` (nil for none): its server, or a relay that
    /// follows the primary among its servers (``PrimaryRelay``), closed after.
    static func withDatabase<Result: Sendable>(
        url: String?, logger: Logger, _ body: (PostgresClient.Configuration?) async throws -> Result
    ) async throws -> Result {
        guard let url else { return try await body(nil) }
        let database = try DatabaseURL(url)
        logger.info("using PostgreSQL", metadata: ["url": "\(database)"])
        guard database.needsRelay else { return try await body(database.configuration) }
        let relay = try await PrimaryRelay.start(database, logger: logger)
        do {
            let result = try await body(relay.configuration)
            await relay.close()
            return result
        } catch {
            await relay.close()
            throw error
        }
    }

    /// Runs `body` with a migrated store, for admin commands that run beside or without a broker.
    package static func withStore<Result: Sendable>(
        _ configuration: BrokerConfiguration, logger: Logger, _ body: @Sendable (Store) async throws -> Result
    ) async throws -> Result {
        try await withDatabase(configuration, logger: logger) { database in
            let client = PostgresClient(configuration: database, backgroundLogger: logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                try await Migrator(client: client).migrate(logger: logger)
                return try await body(Store(client: client))
            }
        }
    }
}
