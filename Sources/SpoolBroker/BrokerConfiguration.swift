import Foundation
import Hummingbird
import SpoolStore

/// Everything a broker needs to start; every field has a documented default.
package struct BrokerConfiguration: Sendable {
    /// Address to listen on. Defaults to `127.0.0.1`.
    package var host: String = "127.0.0.1"
    /// Port to listen on; 0 picks a free one. Defaults to 8080.
    package var port: Int = 8080
    /// A `postgres://` URL of the database. Defaults to nil: run the embedded cluster under `dataDirectory`.
    package var databaseURL: String? = nil
    /// Where the embedded PostgreSQL cluster lives when no `databaseURL` is given. Defaults to `./spool-data`.
    package var dataDirectory: String = "spool-data"
    /// Directory of PostgreSQL's `initdb` and `pg_ctl` for the embedded cluster. Defaults to nil: search PATH, then /usr/lib/postgresql.
    package var postgresBinDirectory: String? = nil
    /// API keys accepted in `Authorization: Bearer <key>`, besides those created with `spool-broker keys create`.
    /// Defaults to none; with no key at all the broker is open and must listen on loopback.
    package var apiKeys: [String] = []
    /// Largest request body accepted, in bytes; larger ones get a 413. Defaults to 10 MiB.
    package var maxBodyBytes: Int = 10 * 1024 * 1024
    /// Largest file accepted (uploads, batch inputs, workers' file outputs), in bytes; larger ones get a 413. Defaults to 4 GiB.
    package var maxFileBytes: Int64 = 4 << 30
    /// How long an `Idempotency-Key` is remembered, in seconds. Defaults to 24 hours.
    package var idempotencyWindowSeconds: Int = 24 * 60 * 60
    /// Connections in the database pool. Defaults to 20.
    package var databaseConnections: Int = 20
    /// Every statement sent unnamed, for a pooler in transaction mode without prepared-statement
    /// support (PgBouncer before 1.21): each costs a parse and a plan (BENCHMARKS.md).
    package var unnamedStatements = false
    /// Where the LISTEN connection goes when `databaseURL` is a pooler in transaction mode; nil: `databaseURL`.
    package var listenDatabaseURL: String? = nil
    /// Lease expiries (and retryable fails) a job may use; the one that reaches it fails the job. Defaults to 3.
    package var retryLimit: Int = 3
    /// Longest an attempt may run before the broker asks it to stop, in seconds. Defaults to one hour.
    package var maxRunSeconds: Double = 3600
    /// How often RunPod workers ping (RUNPOD_PING_INTERVAL), in whole seconds; their leases last
    /// three pings. Defaults to 10, RunPod's own.
    package var runpodPingSeconds: Double = 10
    /// How long a job asked to stop keeps its lease to wind down, in seconds. Defaults to 30.
    package var stopGraceSeconds: Double = 30
    /// How often the requeue of expired leases runs, in seconds. Defaults to 1.
    package var maintenanceIntervalSeconds: Double = 1
    /// How often waiting leases check the database in case a NOTIFY was missed, in seconds. Defaults to 1.
    package var pendingPollSeconds: Double = 1
    /// PEM certificate (chain) to serve HTTPS with; needs `tlsKeyPath`. Defaults to nil: plain HTTP.
    package var tlsCertificatePath: String? = nil
    /// PEM private key of `tlsCertificatePath`. Defaults to nil.
    package var tlsKeyPath: String? = nil
    /// The URL clients reach this broker at, for the URLs fal's API hands out (behind a load
    /// balancer, say). Defaults to nil: the scheme and Host of each request.
    package var publicURL: String? = nil
    /// Longest quiet gap in a status stream before a keep-alive comment, in seconds. Defaults to 15.
    package var streamKeepAliveSeconds: Double = 15
    /// How often a status stream re-reads a running job in case a notification was lost, in seconds.
    /// Defaults to 5; tests raise it to prove that NOTIFY alone carries changes.
    package var streamRereadSeconds: Double = 5
    /// The Standard Webhooks signing secret (`whsec_…`). Defaults to nil: webhooks are off, and a
    /// submit that names one is refused.
    package var webhookSecret: String? = nil
    /// Whether webhooks may target loopback addresses (for tests and one-host setups). Defaults to false.
    package var webhookAllowLoopback: Bool = false
    /// Private networks webhooks may target, in CIDR form. Defaults to none. Link-local never.
    package var webhookAllowedNetworks: [String] = []
    /// How long one webhook attempt may take in all (connecting, the answer's head and body), in
    /// seconds; a slower receiver's attempt is abandoned and retried on schedule. Defaults to 15.
    package var webhookAttemptTimeoutSeconds: Double = 15
    /// How long a delivery is retried before it is given up, in seconds. Defaults to 24 hours.
    package var webhookRetrySeconds: Double = 24 * 3600
    /// How long finished jobs (with their logs and webhook deliveries) are kept, in seconds. Defaults to 7 days.
    package var retentionSeconds: Double = 7 * 24 * 3600
    /// How often the retention sweep runs, in seconds. Defaults to 60.
    package var retentionIntervalSeconds: Double = 60
    /// How often queue depth and live workers are read for metrics and warnings, in seconds. Defaults to 5.
    package var depthRefreshSeconds: Double = 5
    /// After SIGTERM, how long requests under way (uploads, group commits) may take to finish
    /// before they are cancelled, in seconds. Defaults to 30: inside Kubernetes' grace period
    /// (45 s in deploy/) after the 5 s preStop sleep.
    package var shutdownGraceSeconds: Double = 30
    /// How long a connection may send nothing while the broker reads its request (a stalled
    /// upload), or sit idle between requests, before it is closed, in seconds. Defaults to 75.
    package var idleTimeoutSeconds: Double = 75
    /// Uploads one API key may have in progress at once (file uploads and workers' file outputs);
    /// more get a 429. Defaults to 32.
    package var maxUploadsPerKey: Int = 32
    /// Longest line a batch's input file may have, in bytes; a longer one fails the batch, named
    /// by its line number. Defaults to 1 MiB.
    package var maxBatchLineBytes: Int = 1 << 20
    /// Log lines a job keeps; past this the oldest are dropped. Defaults to 10,000.
    package var maxLogLinesPerJob: Int = 10_000
    /// Bytes of log messages a job keeps; past this the oldest lines are dropped. Defaults to 2 MiB.
    package var maxLogBytesPerJob: Int64 = 2 << 20
    /// Models that get their own Prometheus series; the rest are counted under `model="other"`.
    /// Defaults to 500.
    package var maxMetricModels: Int = 500
    /// A key that `/metrics` requires (`Authorization: Bearer <key>`). Defaults to nil: `/metrics` is open.
    package var metricsKey: String? = nil
    /// Each tenant's fair-share weight and quotas (`--tenant`); defaults to weight 1 and no quotas.
    /// Give every replica the same settings.
    package var tenants = TenantSettings()
    /// Seconds before each attempt: the Standard Webhooks schedule. Defaults to immediately, 5 s,
    /// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    package var webhookRetryDelays: [Double] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000]

    package init() {}

    /// Checks the configuration before anything starts; the error says what to change.
    package func validate() throws(ConfigurationError) {
        guard !host.isEmpty else { throw ConfigurationError("--host/SPOOL_HOST is empty: give an address such as 127.0.0.1 or 0.0.0.0.") }
        guard (0...65535).contains(port) else {
            throw ConfigurationError("--port/SPOOL_PORT must be between 0 and 65535, got \(port).")
        }
        if let databaseURL, databaseURL.isEmpty {
            throw ConfigurationError(
                "--database-url/SPOOL_DATABASE_URL is empty: give a postgres:// URL, or leave it out to use the embedded database.")
        }
        if databaseURL == nil, dataDirectory.isEmpty {
            throw ConfigurationError("--data-dir/SPOOL_DATA_DIR is empty: the embedded database needs a directory.")
        }
        guard maxFileBytes >= 1024 else {
            throw ConfigurationError("The file size limit must be at least 1024 bytes, got \(maxFileBytes).")
        }
        guard maxBodyBytes >= 1024 else {
            throw ConfigurationError("The body limit must be at least 1024 bytes, got \(maxBodyBytes).")
        }
        guard idempotencyWindowSeconds > 0 else {
            throw ConfigurationError("The idempotency window must be positive, got \(idempotencyWindowSeconds) seconds.")
        }
        guard (1...1000).contains(databaseConnections) else {
            throw ConfigurationError("The database pool size must be between 1 and 1000, got \(databaseConnections).")
        }
        guard (1...100).contains(retryLimit) else {
            throw ConfigurationError("--retry-limit/SPOOL_RETRY_LIMIT must be between 1 and 100, got \(retryLimit).")
        }
        guard maxRunSeconds >= 1 else {
            throw ConfigurationError("--max-run-seconds/SPOOL_MAX_RUN_SECONDS must be at least 1, got \(maxRunSeconds.formatted()).")
        }
        guard (1...300).contains(runpodPingSeconds), runpodPingSeconds.rounded() == runpodPingSeconds else {
            throw ConfigurationError(
                "--runpod-ping-seconds/SPOOL_RUNPOD_PING_SECONDS must be a whole number of seconds from 1 to 300, got \(runpodPingSeconds.formatted())."
            )
        }
        guard stopGraceSeconds >= 0 else {
            throw ConfigurationError("The stop grace period must not be negative, got \(stopGraceSeconds.formatted()) seconds.")
        }
        guard maintenanceIntervalSeconds > 0, pendingPollSeconds > 0 else {
            throw ConfigurationError("The maintenance and poll intervals must be positive.")
        }
        switch (tlsCertificatePath, tlsKeyPath) {
        case (nil, nil): break
        case (let certificate?, let key?):
            for (flag, path) in [("--tls-cert", certificate), ("--tls-key", key)] where !FileManager.default.isReadableFile(atPath: path) {
                throw ConfigurationError("\(flag) names '\(path)', which is not a readable file.")
            }
        default:
            throw ConfigurationError("HTTPS needs both --tls-cert/SPOOL_TLS_CERT and --tls-key/SPOOL_TLS_KEY.")
        }
        if let publicURL, URLComponents(string: publicURL)?.host == nil {
            throw ConfigurationError("--public-url/SPOOL_PUBLIC_URL must be a URL such as https://spool.example.com, got '\(publicURL)'.")
        }
        guard streamKeepAliveSeconds > 0 else { throw ConfigurationError("The stream keep-alive interval must be positive.") }
        guard streamRereadSeconds > 0 else { throw ConfigurationError("The stream re-read interval must be positive.") }
        if let webhookSecret { _ = try WebhookSigner(secret: webhookSecret) }
        for network in webhookAllowedNetworks {
            guard let parsed = IPNetwork(cidr: network) else {
                throw ConfigurationError("SPOOL_WEBHOOK_ALLOW_NETWORKS: '\(network)' is not a network in CIDR form such as 10.0.0.0/8.")
            }
            if WebhookTargets.kind(of: parsed.address) == .linkLocal {
                throw ConfigurationError(
                    "SPOOL_WEBHOOK_ALLOW_NETWORKS: '\(network)' is link-local (cloud metadata); webhooks there are never allowed.")
            }
        }
        guard retentionSeconds >= 60, retentionIntervalSeconds > 0, depthRefreshSeconds > 0 else {
            throw ConfigurationError("The retention period must be at least a minute, and the sweep and depth intervals positive.")
        }
        guard (0.1...300).contains(webhookAttemptTimeoutSeconds) else {
            throw ConfigurationError(
                "The webhook attempt timeout must be between 0.1 and 300 seconds, got \(webhookAttemptTimeoutSeconds.formatted()).")
        }
        guard webhookRetrySeconds > 0, !webhookRetryDelays.isEmpty, webhookRetryDelays.allSatisfy({ $0 >= 0 }) else {
            throw ConfigurationError("The webhook retry period must be positive and its schedule a list of delays of 0 s or more.")
        }
        guard shutdownGraceSeconds >= 0 else {
            throw ConfigurationError("--shutdown-grace/SPOOL_SHUTDOWN_GRACE must not be negative, got \(shutdownGraceSeconds.formatted()).")
        }
        guard idleTimeoutSeconds >= 1 else {
            throw ConfigurationError("--idle-timeout/SPOOL_IDLE_TIMEOUT must be at least 1 second, got \(idleTimeoutSeconds.formatted()).")
        }
        guard maxUploadsPerKey >= 1 else {
            throw ConfigurationError("--max-uploads-per-key/SPOOL_MAX_UPLOADS_PER_KEY must be at least 1, got \(maxUploadsPerKey).")
        }
        guard (1024...(256 << 20)).contains(maxBatchLineBytes) else {
            throw ConfigurationError(
                "--max-batch-line-bytes/SPOOL_MAX_BATCH_LINE_BYTES must be between 1024 and 268435456, got \(maxBatchLineBytes).")
        }
        guard maxLogLinesPerJob >= 10, maxLogBytesPerJob >= 16 << 10 else {
            throw ConfigurationError(
                "--max-log-lines/SPOOL_MAX_LOG_LINES must be at least 10 and --max-log-bytes/SPOOL_MAX_LOG_BYTES at least 16384.")
        }
        guard maxMetricModels >= 1 else {
            throw ConfigurationError("--max-metric-models/SPOOL_MAX_METRIC_MODELS must be at least 1, got \(maxMetricModels).")
        }
        if let metricsKey, metricsKey.count < 16 || metricsKey.contains(where: \.isWhitespace) {
            throw ConfigurationError("--metrics-key/SPOOL_METRICS_KEY needs at least 16 characters and no spaces.")
        }
        for key in apiKeys where key.count < 16 || key.contains(where: { $0.isWhitespace || $0 == "," }) {
            throw ConfigurationError(
                "API key '\(key.prefix(4))…' is too weak or malformed: keys need at least 16 characters and no spaces or commas.")
        }
    }

    /// How many log lines and bytes a job keeps.
    var logLimits: JobLogLimits { JobLogLimits(maxLines: maxLogLinesPerJob, maxBytes: maxLogBytesPerJob) }

    /// The webhook targets this configuration allows.
    var webhookTargets: WebhookTargets {
        WebhookTargets(allowLoopback: webhookAllowLoopback, allowedNetworks: webhookAllowedNetworks.compactMap(IPNetwork.init(cidr:)))
    }

    /// Whether `host` accepts connections from this machine only.
    package var listensOnLoopbackOnly: Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

extension BrokerConfiguration: CustomStringConvertible {
    /// Where it listens and what it connects to, never a key or a secret: this is what logs show.
    package var description: String {
        "BrokerConfiguration(host: \(host), port: \(port), database: \(databaseURL == nil ? "embedded in \(dataDirectory)" : "a URL"), api keys: \(apiKeys.count), webhooks: \(webhookSecret == nil ? "off" : "on"))"
    }
}

/// A configuration a person must fix before the broker can start.
package struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

extension BrokerConfiguration {
    /// Where URLs handed to clients point: the broker's public URL, else the address the client used.
    func publicRoot(_ request: Request) -> String {
        if let publicURL {
            return publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        }
        let scheme = tlsCertificatePath != nil ? "https" : "http"
        return "\(scheme)://\(request.head.authority ?? "\(host):\(port)")"
    }
}
