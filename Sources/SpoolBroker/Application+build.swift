import Hummingbird
import Logging
import PostgresNIO
import SpoolCore
import SpoolStore

/// Builds the broker: the database pool, migrations before the first request, auth and routes.
///
/// `spool-broker` and the tests both call this; `database` is where PostgreSQL is (the embedded
/// cluster's socket or a URL's server).
public func buildApplication(
    _ configuration: BrokerConfiguration, database: PostgresClient.Configuration, logger: Logger
) throws -> some ApplicationProtocol {
    try buildApplication(configuration, database: database, logger: logger, waiters: LeaseWaiters())
}

/// The same, with the long-poll registry given: tests watch it to know a lease is waiting.
func buildApplication(
    _ configuration: BrokerConfiguration, database: PostgresClient.Configuration, logger: Logger, waiters: LeaseWaiters
) throws -> some ApplicationProtocol {
    try configuration.validate()
    var database = database
    database.options.maximumConnections = configuration.databaseConnections
    let client = PostgresClient(configuration: database, backgroundLogger: logger)
    let store = SpoolStore(client: client)
    let authenticator = Authenticator(configuredKeys: configuration.apiKeys, store: store)

    let router = Router(context: BrokerRequestContext.self)
    router.add(middleware: ErrorMiddleware(maxBodyBytes: configuration.maxBodyBytes))
    router.get("healthz") { _, _ in JSONResponse.make(["status": "ok"]) }
    let authenticated = router.group().add(middleware: AuthMiddleware(authenticator: authenticator))
    QueueRoutes(store: store, configuration: configuration).register(on: authenticated)
    WorkerRoutes(store: store, waiters: waiters, configuration: configuration).register(on: authenticated)

    let schema = SchemaReadiness()
    let listener = PendingJobListener(
        store: store, waiters: waiters, schema: schema, pollInterval: .seconds(configuration.pendingPollSeconds), logger: logger)
    let reaper = LeaseReaper(store: store, configuration: configuration, schema: schema, logger: logger)
    var app = Application(
        router: router,
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "spool-broker"),
        services: [client, listener, reaper],
        logger: logger)
    app.beforeServerStarts {
        try await Migrator(client: client).migrate(logger: logger)
        schema.markReady()
        let tableKeys = try await store.apiKeys.countLive(on: client, logger: logger)
        if authenticator.decideOpenness(liveTableKeys: tableKeys) {
            guard configuration.listensOnLoopbackOnly else {
                throw ConfigurationError(
                    "No API key is configured, so the broker would accept anyone on \(configuration.host): without keys it listens on loopback only. Give --api-key/SPOOL_API_KEYS (or create one with 'spool-broker keys create'), or use --host 127.0.0.1.")
            }
            logger.warning("no API key is configured: the broker is open to every local process", metadata: ["host": "\(configuration.host)"])
        }
    }
    return app
}

