import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Builds the broker: the database pool, migrations before the first request, auth and routes.
///
/// `spool-broker` and the tests both call this; `database` is where PostgreSQL is (the embedded
/// cluster's socket or a URL's server).
/// `listenDatabase`, when given, is where the LISTEN connection goes instead (`database` is a
/// pooler in transaction mode).
package func buildApplication(
    _ configuration: BrokerConfiguration, database: PostgresClient.Configuration, listenDatabase: PostgresClient.Configuration? = nil,
    logger: Logger
) throws -> some ApplicationProtocol {
    try buildApplication(configuration, database: database, listenDatabase: listenDatabase, logger: logger, connections: BrokerConnections())
}

/// The clients connected to a broker and waiting on it: its open long-polls and status streams.
struct BrokerConnections: Sendable {
    let waiters = LeaseWaiters()
    let watchers = JobWatchers()
    /// Raised when a webhook delivery is enqueued (NOTIFY), to start its first attempt at once.
    let webhooks = Signal()
    /// Raised when a batch is created or canceled, so the batch runner acts at once.
    let batches = Signal()
    /// Raised when the API keys change, so every replica applies it at once.
    let keys = Signal()
}

/// The same, with the registries of waiting clients given: tests watch them to know a client waits.
func buildApplication(
    _ configuration: BrokerConfiguration, database: PostgresClient.Configuration, listenDatabase: PostgresClient.Configuration? = nil,
    logger: Logger, connections: BrokerConnections
) throws -> some ApplicationProtocol {
    try configuration.validate()
    var database = database
    database.options.maximumConnections = configuration.databaseConnections
    let client = PostgresClient(configuration: database, backgroundLogger: logger)
    // The LISTEN connection's own small pool, when the main one goes through a transaction pooler.
    let listenClient = listenDatabase.map { listenDatabase in
        var listenDatabase = listenDatabase
        listenDatabase.options.maximumConnections = 2
        return PostgresClient(configuration: listenDatabase, backgroundLogger: logger)
    }
    let store = Store(client: client)
    let authenticator = Authenticator(configuredKeys: configuration.apiKeys, store: store)

    let schema = SchemaReadiness()
    let metrics = BrokerMetrics(maxModels: configuration.maxMetricModels)
    let monitor = QueueDepthMonitor(
        store: store, metrics: metrics, schema: schema, interval: .seconds(configuration.depthRefreshSeconds), logger: logger)
    let router = Router(context: BrokerRequestContext.self)
    router.add(middleware: RequestMetricsMiddleware(metrics: metrics))
    router.add(middleware: ErrorMiddleware(maxBodyBytes: configuration.maxBodyBytes))
    // Every route goes through it, so an existing path asked with another method answers 405.
    let routes = RouteMethodRecorder(router)
    let operations = OperationsRoutes(
        store: store, schema: schema, metrics: metrics, monitor: monitor, connections: connections, metricsKey: configuration.metricsKey,
        webhooks: configuration.webhookSecret != nil)
    // Routes that need no key; an open broker still refuses browsers there.
    let keyless = routes.group().add(middleware: OpenBrokerGuard(authenticator: authenticator))
    operations.registerPublic(on: keyless)
    DashboardRoutes(directory: ProcessInfo.processInfo.environment["SPOOL_UI_DIRECTORY"]).register(on: keyless)
    let files = FileRoutes(store: store, configuration: configuration, uploads: UploadSlots(maxPerKey: configuration.maxUploadsPerKey))
    files.registerUpload(on: keyless)
    // Every other route needs a key (the same middleware applies an open broker's browser rules).
    let authenticated = routes.group().add(middleware: AuthMiddleware(authenticator: authenticator))
    // Each route belongs to one scope; a key without it gets 403 naming the scope.
    let clients = authenticated.group().add(middleware: RequireScope(scope: .client))
    let workers = authenticated.group().add(middleware: RequireScope(scope: .worker))
    let admins = authenticated.group().add(middleware: RequireScope(scope: .admin))
    operations.register(on: admins)
    AdminRoutes(store: store).register(on: admins)
    let quotas = TenantQuotas(store: store, settings: configuration.tenants)
    let submitter = Submitter(
        store: store, configuration: configuration, targets: configuration.webhookTargets, metrics: metrics,
        inserts: SubmitGroupCommit(store: store, logger: logger), quotas: quotas, waiters: connections.waiters)
    let views = JobViews(store: store, positions: QueuePositions(store: store), monitor: monitor)
    let stream = StatusStream(
        store: store, watchers: connections.watchers, keepAlive: .seconds(configuration.streamKeepAliveSeconds),
        reread: .seconds(configuration.streamRereadSeconds)
    )
    QueueRoutes(store: store, configuration: configuration, submitter: submitter, views: views, stream: stream, metrics: metrics)
        .register(on: clients, admins: admins)
    JobRoutes(store: store, configuration: configuration, metrics: metrics).register(on: clients, admins: admins)
    let workerRoutes = WorkerRoutes(
        store: store, waiters: connections.waiters, configuration: configuration, metrics: metrics,
        completions: CompletionGroupCommit(store: store, logger: logger))
    workerRoutes.register(on: workers)
    FalRoutes(store: store, configuration: configuration, submitter: submitter, views: views, stream: stream, metrics: metrics)
        .register(on: clients)
    // Client and worker routes share the /v2/{endpoint_id}/ tree: each checks its own scope.
    RunPodRoutes(
        store: store, configuration: configuration, submitter: submitter, watchers: connections.watchers, metrics: metrics,
        workerSide: RunPodWorkerRoutes(store: store, configuration: configuration, metrics: metrics, leases: workerRoutes)
    )
    .register(on: authenticated)
    files.register(on: clients)
    files.registerWorkerUpload(on: workers)
    BatchRoutes(store: store, configuration: configuration, quotas: quotas, wakeup: connections.batches).register(on: clients)
    routes.narrow(RunPodRoutes.route, by: RunPodRoutes.allowedMethods)
    // Last, after every route: it wraps only the router's answer to a request no route matched.
    router.add(middleware: MethodNotAllowedMiddleware(allowed: routes.allowedMethods()))

    let listener = JobNotificationListener(
        store: store, listenClient: listenClient ?? client, connections: connections, schema: schema,
        pollInterval: .seconds(configuration.pendingPollSeconds), logger: logger)
    let reaper = LeaseReaper(store: store, configuration: configuration, schema: schema, metrics: metrics, logger: logger)
    let retention = RetentionService(store: store, configuration: configuration, schema: schema, logger: logger)
    let batches = BatchRunner(store: store, configuration: configuration, schema: schema, wakeups: connections.batches, logger: logger)
    let keyWatcher = KeyWatcher(authenticator: authenticator, changes: connections.keys, schema: schema, logger: logger)
    var services: [any Service] = [client, listener, reaper, retention, monitor, batches, keyWatcher]
    if let listenClient { services.append(listenClient) }
    if let secret = configuration.webhookSecret {
        services.append(
            WebhookSender(
                store: store, configuration: configuration, signer: try WebhookSigner(secret: secret), targets: configuration.webhookTargets,
                wakeups: connections.webhooks, metrics: metrics, schema: schema, logger: logger))
    }
    var app = Application(
        router: router,
        server: try serverBuilder(configuration),
        configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "spool-broker"),
        services: services,
        logger: logger)
    app.beforeServerStarts {
        try await Migrator(client: client).migrate(logger: logger)
        let tableKeys = try await store.apiKeys.countLive(on: client, logger: logger)
        if authenticator.decideOpenness(liveTableKeys: tableKeys) {
            guard configuration.listensOnLoopbackOnly else {
                throw ConfigurationError(
                    "No API key is configured, so the broker would accept anyone on \(configuration.host): without keys it listens on loopback only. Give --api-key/SPOOL_API_KEYS (or create one with 'spool-broker keys create'), or use --host 127.0.0.1."
                )
            }
            logger.warning("no API key is configured: the broker is open to every local process", metadata: ["host": "\(configuration.host)"])
        }
        // After openness is decided: the key watcher's first look must see it.
        schema.markReady()
    }
    return app
}

/// HTTP/1.1, over TLS when a certificate and key are configured. A connection that sends nothing
/// for the idle timeout, mid-request (a stalled upload) or between requests, is closed; each
/// connection is watched so a long-poll notices a client that hung up.
func serverBuilder(_ configuration: BrokerConfiguration) throws -> HTTPServerBuilder {
    let http1 = HTTPServerBuilder.http1(
        configuration: .init(
            additionalChannelHandlers: [ClientConnectionWatch()],
            idleTimeout: .milliseconds(Int64(configuration.idleTimeoutSeconds * 1000))))
    guard let certificatePath = configuration.tlsCertificatePath, let keyPath = configuration.tlsKeyPath else { return http1 }
    do {
        let chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        return try .tls(http1, tlsConfiguration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
    } catch {
        throw ConfigurationError("Cannot load the TLS certificate '\(certificatePath)' and key '\(keyPath)': \(error).")
    }
}
