import ArgumentParser
import Foundation
import Logging
import SpoolBroker
import SpoolCore
import SpoolStore

/// `spool-broker`: flags first, then `SPOOL_*` environment variables, then the documented defaults.
@main
struct SpoolBrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-broker",
        abstract: "Spool's broker: a job queue for long-running AI inference, kept in PostgreSQL.",
        subcommands: [Serve.self, Keys.self, RunPodEnv.self],
        defaultSubcommand: Serve.self)
}

/// Options every subcommand shares: where the database is.
struct DatabaseOptions: ParsableArguments {
    @Option(help: "PostgreSQL URL (postgres://user:pass@host:5432/db). Env: SPOOL_DATABASE_URL. Default: the embedded cluster.")
    var databaseURL: String?

    @Flag(
        help: ArgumentHelp(
            "Send every statement unnamed (no prepared statements), to work through a pooler in transaction mode that does not track them (PgBouncer < 1.21). Env: SPOOL_UNNAMED_STATEMENTS=1."
        ))
    var unnamedStatements = false

    @Option(
        help: ArgumentHelp(
            "PostgreSQL URL for the LISTEN connection when --database-url goes through a pooler in transaction mode (LISTEN needs a session). Env: SPOOL_LISTEN_DATABASE_URL. Default: --database-url."
        ))
    var listenDatabaseURL: String?

    @Option(help: "Directory of the embedded PostgreSQL cluster. Env: SPOOL_DATA_DIR. Default: ./spool-data.")
    var dataDir: String?

    @Option(help: "Directory with PostgreSQL's initdb and pg_ctl. Env: SPOOL_POSTGRES_BIN. Default: PATH, then /usr/lib/postgresql.")
    var postgresBin: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error. Env: SPOOL_LOG_LEVEL. Default: info.")
    var logLevel: String?

    func apply(to configuration: inout BrokerConfiguration) {
        let environment = ProcessInfo.processInfo.environment
        configuration.databaseURL = databaseURL ?? environment["SPOOL_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
        if let dataDir = dataDir ?? environment["SPOOL_DATA_DIR"] { configuration.dataDirectory = dataDir }
        configuration.postgresBinDirectory = postgresBin ?? environment["SPOOL_POSTGRES_BIN"]
        configuration.unnamedStatements =
            unnamedStatements || ["1", "true", "yes", "on"].contains(environment["SPOOL_UNNAMED_STATEMENTS"]?.lowercased() ?? "")
        configuration.listenDatabaseURL = listenDatabaseURL ?? environment["SPOOL_LISTEN_DATABASE_URL"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func makeLogger() throws -> Logger {
        let text = logLevel ?? ProcessInfo.processInfo.environment["SPOOL_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: text) else {
            throw ValidationError("Unknown log level '\(text)': use trace, debug, info, notice, warning or error.")
        }
        var logger = Logger(label: "spool-broker")
        logger.logLevel = level
        return logger
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the broker (the default).")

    @Option(help: "Address to listen on. Env: SPOOL_HOST. Default: 127.0.0.1.")
    var host: String?

    @Option(help: "Port to listen on. Env: SPOOL_PORT. Default: 8080.")
    var port: Int?

    @Option(name: .customLong("api-key"), help: "An accepted API key (repeatable). Env: SPOOL_API_KEYS, comma-separated.")
    var apiKeys: [String] = []

    @Option(
        name: .customLong("tenant"),
        help:
            "A tenant's weight and quotas, name:field=value,… with weight, rate, burst, max-pending, max-running; '*' for every tenant (repeatable). Env: SPOOL_TENANTS, separated by ';'."
    )
    var tenants: [String] = []

    @Option(help: "Largest request body in bytes. Env: SPOOL_MAX_BODY_BYTES. Default: 10485760 (10 MiB).")
    var maxBodyBytes: Int?

    @Option(help: "Largest uploaded file in bytes. Env: SPOOL_MAX_FILE_BYTES. Default: 4294967296 (4 GiB).")
    var maxFileBytes: Int?

    @Option(help: "Lease expiries (or retryable fails) a job may use before it fails. Env: SPOOL_RETRY_LIMIT. Default: 3.")
    var retryLimit: Int?

    @Option(help: "Longest an attempt may run before it is asked to stop, in seconds. Env: SPOOL_MAX_RUN_SECONDS. Default: 3600.")
    var maxRunSeconds: Double?

    @Option(help: "How often RunPod workers ping, in seconds (their leases last three pings). Env: SPOOL_RUNPOD_PING_SECONDS. Default: 10.")
    var runpodPingSeconds: Double?

    @Option(help: "PEM certificate to serve HTTPS with (needs --tls-key). Env: SPOOL_TLS_CERT.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert. Env: SPOOL_TLS_KEY.")
    var tlsKey: String?

    @Option(help: "The URL clients reach this broker at, for URLs in answers (fal, files). Env: SPOOL_PUBLIC_URL. Default: each request's own.")
    var publicURL: String?

    @Option(help: "Standard Webhooks signing secret (whsec_…); without one, webhooks are off. Env: SPOOL_WEBHOOK_SECRET.")
    var webhookSecret: String?

    @Option(help: "Days finished jobs are kept before they are pruned. Env: SPOOL_RETENTION_DAYS. Default: 7.")
    var retentionDays: Double?

    @Option(
        help:
            "Seconds a connection may send nothing mid-request (a stalled upload) or sit idle before it is closed. Env: SPOOL_IDLE_TIMEOUT. Default: 75."
    )
    var idleTimeout: Double?

    @Option(help: "Uploads one API key may have in progress on a broker at once. Env: SPOOL_MAX_UPLOADS_PER_KEY. Default: 32.")
    var maxUploadsPerKey: Int?

    @Option(help: "Longest line of a batch's input file in bytes. Env: SPOOL_MAX_BATCH_LINE_BYTES. Default: 1048576 (1 MiB).")
    var maxBatchLineBytes: Int?

    @Option(help: "Log lines a job keeps; older ones are dropped. Env: SPOOL_MAX_LOG_LINES. Default: 10000.")
    var maxLogLines: Int?

    @Option(help: "Bytes of log messages a job keeps; older lines are dropped. Env: SPOOL_MAX_LOG_BYTES. Default: 2097152 (2 MiB).")
    var maxLogBytes: Int?

    @Option(help: "Models with Prometheus series of their own; the rest count as model=\"other\". Env: SPOOL_MAX_METRIC_MODELS. Default: 500.")
    var maxMetricModels: Int?

    @Option(help: "A key /metrics requires (Authorization: Bearer <key>). Env: SPOOL_METRICS_KEY. Default: /metrics is open.")
    var metricsKey: String?

    @Option(help: "Seconds one webhook attempt may take in all before it is abandoned and retried. Env: SPOOL_WEBHOOK_ATTEMPT_TIMEOUT. Default: 15.")
    var webhookAttemptTimeout: Double?

    @Option(help: "Seconds requests under way may take to finish after SIGTERM before they are cancelled. Env: SPOOL_SHUTDOWN_GRACE. Default: 30.")
    var shutdownGrace: Double?

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var configuration = BrokerConfiguration()
        if let seconds = try idleTimeout ?? Self.number(environment, "SPOOL_IDLE_TIMEOUT") { configuration.idleTimeoutSeconds = seconds }
        if let count = try maxUploadsPerKey ?? Self.integer(environment, "SPOOL_MAX_UPLOADS_PER_KEY") { configuration.maxUploadsPerKey = count }
        if let bytes = try maxBatchLineBytes ?? Self.integer(environment, "SPOOL_MAX_BATCH_LINE_BYTES") { configuration.maxBatchLineBytes = bytes }
        if let lines = try maxLogLines ?? Self.integer(environment, "SPOOL_MAX_LOG_LINES") { configuration.maxLogLinesPerJob = lines }
        if let bytes = try maxLogBytes ?? Self.integer(environment, "SPOOL_MAX_LOG_BYTES") { configuration.maxLogBytesPerJob = Int64(bytes) }
        if let models = try maxMetricModels ?? Self.integer(environment, "SPOOL_MAX_METRIC_MODELS") { configuration.maxMetricModels = models }
        configuration.metricsKey = metricsKey ?? environment["SPOOL_METRICS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if let seconds = try shutdownGrace ?? Self.number(environment, "SPOOL_SHUTDOWN_GRACE") { configuration.shutdownGraceSeconds = seconds }
        if let seconds = try webhookAttemptTimeout ?? Self.number(environment, "SPOOL_WEBHOOK_ATTEMPT_TIMEOUT") {
            configuration.webhookAttemptTimeoutSeconds = seconds
        }
        database.apply(to: &configuration)
        if let host = host ?? environment["SPOOL_HOST"] { configuration.host = host }
        if let port = try port ?? Self.integer(environment, "SPOOL_PORT") { configuration.port = port }
        if let limit = try maxBodyBytes ?? Self.integer(environment, "SPOOL_MAX_BODY_BYTES") { configuration.maxBodyBytes = limit }
        if let limit = try maxFileBytes ?? Self.integer(environment, "SPOOL_MAX_FILE_BYTES") { configuration.maxFileBytes = Int64(limit) }
        if let limit = try retryLimit ?? Self.integer(environment, "SPOOL_RETRY_LIMIT") { configuration.retryLimit = limit }
        if let seconds = try maxRunSeconds ?? Self.number(environment, "SPOOL_MAX_RUN_SECONDS") { configuration.maxRunSeconds = seconds }
        if let seconds = try runpodPingSeconds ?? Self.number(environment, "SPOOL_RUNPOD_PING_SECONDS") {
            configuration.runpodPingSeconds = seconds
        }
        configuration.tlsCertificatePath = tlsCert ?? environment["SPOOL_TLS_CERT"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.tlsKeyPath = tlsKey ?? environment["SPOOL_TLS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.publicURL = publicURL ?? environment["SPOOL_PUBLIC_URL"].flatMap { $0.isEmpty ? nil : $0 }
        configuration.webhookSecret = webhookSecret ?? environment["SPOOL_WEBHOOK_SECRET"].flatMap { $0.isEmpty ? nil : $0 }
        if let days = try retentionDays ?? Self.number(environment, "SPOOL_RETENTION_DAYS") { configuration.retentionSeconds = days * 86400 }
        configuration.webhookAllowLoopback = ["1", "true", "yes"].contains(environment["SPOOL_WEBHOOK_ALLOW_LOOPBACK"]?.lowercased() ?? "")
        configuration.webhookAllowedNetworks = Self.list(environment["SPOOL_WEBHOOK_ALLOW_NETWORKS"])
        if let seconds = try Self.number(environment, "SPOOL_WEBHOOK_RETRY_SECONDS") { configuration.webhookRetrySeconds = seconds }
        if let delays = environment["SPOOL_WEBHOOK_RETRY_DELAYS"], !delays.isEmpty {
            configuration.webhookRetryDelays = try Self.list(delays).map {
                guard let seconds = Double($0) else {
                    throw ValidationError("SPOOL_WEBHOOK_RETRY_DELAYS must be seconds separated by commas, got '\(delays)'.")
                }
                return seconds
            }
        }
        configuration.apiKeys = apiKeys.isEmpty ? Self.list(environment["SPOOL_API_KEYS"]) : apiKeys
        do {
            let specs = tenants.isEmpty ? (environment["SPOOL_TENANTS"] ?? "").split(separator: ";").map(String.init) : tenants
            configuration.tenants = try TenantSettings.parse(specs.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty })
            try configuration.validate()
        } catch {
            throw ValidationError(error.description)
        }
        try await Broker.run(configuration, logger: try database.makeLogger())
    }

    /// A comma-separated environment value as a list, blanks dropped.
    static func list(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func number(_ environment: [String: String], _ name: String) throws -> Double? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Double(text) else { throw ValidationError("\(name) must be a number, got '\(text)'.") }
        return value
    }

    static func integer(_ environment: [String: String], _ name: String) throws -> Int? {
        guard let text = environment[name], !text.isEmpty else { return nil }
        guard let value = Int(text) else { throw ValidationError("\(name) must be a whole number, got '\(text)'.") }
        return value
    }
}

struct RunPodEnv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runpod-env",
        abstract: "Print the environment that points an unmodified RunPod worker at this broker, as NAME=value lines.")
    @Option(help: "The endpoint id: the model the worker serves (acme/sd).") var endpoint: String
    @Option(help: "The URL workers reach the broker at (https://spool.internal:8080).") var brokerURL: String
    @Option(help: "A key with the worker scope (any text on a broker without keys).") var apiKey: String
    @Option(help: "The broker's --runpod-ping-seconds. Default: 10.") var pingSeconds: Double = 10
    @Option(help: "RUNPOD_POD_ID, the worker's id (a Kubernetes pod name). Default: a new random id.") var podID: String?

    func run() throws {
        do {
            for line in try RunPodEnvironment(
                endpoint: endpoint, brokerURL: brokerURL, apiKey: apiKey, pingSeconds: pingSeconds, podID: podID
            ).lines {
                print(line)
            }
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage API keys stored (as hashes) in the database.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key and print it once; only its hash is stored.")
        @Option(help: "A name to recognise the key by.") var name: String
        @Option(help: "What the key may do, comma-separated: client, worker, admin. Default: all three.")
        var scopes: String = "client,worker,admin"
        @Option(help: "The tenant a client key belongs to.") var tenant: String?
        @Option(help: "Model patterns a worker key serves, comma-separated ('acme/*'). Default: every model.") var models: String?
        @Option(help: "When the key stops working: a duration from now (90d, 12h, 30m) or an RFC 3339 time.") var expires: String?
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var configuration = BrokerConfiguration()
            database.apply(to: &configuration)
            let logger = try database.makeLogger()
            let request: CreateKeyRequest
            do {
                request = try CreateKeyRequest(name: name, scopes: scopes, tenant: tenant, models: models, expires: expires)
            } catch {
                throw ValidationError(error.message)
            }
            let key = APIKeyHash.generateKey()
            let view = try await Broker.withStore(configuration, logger: logger) { store in
                try await store.apiKeys.create(request, key: key, createdBy: "cli", on: store.client, logger: logger)
            }
            print("id: \(view.id)\nkey: \(key)\nscopes: \(view.scopes.joined(separator: ","))")
            if let tenant = view.tenant { print("tenant: \(tenant)") }
            if let models = view.models { print("models: \(models.joined(separator: ","))") }
            if let expiresAt = view.expiresAt { print("expires_at: \(RFC3339.string(from: expiresAt))") }
            print("Store the key now: it cannot be shown again.")
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List live keys (ids, names, scopes; never the keys).")
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var configuration = BrokerConfiguration()
            database.apply(to: &configuration)
            let logger = try database.makeLogger()
            let keys = try await Broker.withStore(configuration, logger: logger) { store in
                try await store.apiKeys.list(on: store.client, logger: logger)
            }
            print("id\tname\tscopes\ttenant\tmodels\tcreated_at\texpires_at")
            for key in keys {
                print(
                    [
                        key.id, key.name, key.scopes.joined(separator: ","), key.tenant ?? "-", key.models?.joined(separator: ",") ?? "*",
                        RFC3339.string(from: key.createdAt), key.expiresAt.map(RFC3339.string(from:)) ?? "never",
                    ].joined(separator: "\t"))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by id; every broker refuses it at once.")
        @Argument(help: "The key's id, as 'keys list' shows it.") var id: String
        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            var configuration = BrokerConfiguration()
            database.apply(to: &configuration)
            let logger = try database.makeLogger()
            let id = self.id
            let revoked = try await Broker.withStore(configuration, logger: logger) { store in
                try await store.apiKeys.revoke(id: id, by: "cli", on: store.client, logger: logger)
            }
            guard revoked else { throw ValidationError("No live key with id '\(id)'.") }
            print("revoked \(id)")
        }
    }
}
