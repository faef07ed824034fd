import Foundation

/// Everything a worker needs to run; every field has a documented default.
public struct WorkerConfiguration: Sendable {
    /// Broker base URLs (any replica); the worker moves to the next when one is unreachable.
    /// Defaults to `http://127.0.0.1:8080`.
    public var brokerURLs: [String] = ["http://127.0.0.1:8080"]
    /// Models this worker serves. Required.
    public var models: [String] = []
    /// Jobs run at once. Defaults to 1.
    public var concurrency: Int = 1
    /// The lease (claim timeout) asked for each job, in seconds: if no heartbeat arrives for this
    /// long, the broker gives the job to another worker. Defaults to 30.
    public var leaseSeconds: Double = 30
    /// Seconds between heartbeats. Defaults to nil: a third of the lease, well inside it.
    public var heartbeatSeconds: Double? = nil
    /// How long one lease request waits for a job (long-poll), in seconds. Defaults to 20.
    public var waitSeconds: Double = 20
    /// On SIGTERM, how long running jobs may finish before they are handed back, in seconds. Defaults to 30.
    public var drainSeconds: Double = 30
    /// Sent as `Authorization: Bearer <key>`. Defaults to none.
    public var apiKey: String? = nil
    /// Names this worker to the broker. Defaults to `<host>-<pid>-<random>`.
    public var workerID: String = WorkerConfiguration.defaultWorkerID()
    /// Longest a report (emit or log) waits before it is sent, in seconds. Defaults to 0.2.
    public var reportDelaySeconds: Double = 0.2
    /// PEM file of the certificate authorities to trust for an https broker, besides the system's.
    /// Defaults to nil: the system's trust store.
    public var caFile: String? = nil

    public init() {}

    /// A worker of `models` at `brokerURLs`, the rest as the defaults above.
    public init(brokerURLs: [String], models: [String]) {
        self.brokerURLs = brokerURLs
        self.models = models
    }

    /// The heartbeat period in effect.
    public var heartbeatInterval: Duration { .seconds(heartbeatSeconds ?? leaseSeconds / 3) }

    /// Checks the configuration before anything starts; the error says what to change.
    public func validate() throws(WorkerConfigurationError) {
        guard !brokerURLs.isEmpty else { throw .init("Give at least one broker URL (--broker or SPOOL_BROKER_URL).") }
        for url in brokerURLs {
            guard let components = URLComponents(string: url), ["http", "https"].contains(components.scheme ?? ""),
                components.host?.isEmpty == false
            else {
                throw .init("The broker URL '\(url)' must look like http://host:8080.")
            }
        }
        guard !models.isEmpty else { throw .init("Give at least one model to serve (--model, repeatable).") }
        guard models.count <= WorkerProtocolLimits.maxModelsPerLease else {
            throw .init("A worker serves at most \(WorkerProtocolLimits.maxModelsPerLease) models, got \(models.count).")
        }
        guard (1...WorkerProtocolLimits.maxJobsPerLease).contains(concurrency) else {
            throw .init("--concurrency must be between 1 and \(WorkerProtocolLimits.maxJobsPerLease), got \(concurrency).")
        }
        guard WorkerProtocolLimits.leaseSeconds.contains(leaseSeconds) else {
            throw .init("--lease-seconds must be between 1 and 3600, got \(leaseSeconds.formatted()).")
        }
        if let heartbeatSeconds, !(heartbeatSeconds > 0 && heartbeatSeconds < leaseSeconds) {
            throw .init("The heartbeat period must be positive and shorter than the lease (\(leaseSeconds.formatted()) s).")
        }
        guard (0...WorkerProtocolLimits.maxWaitSeconds).contains(waitSeconds) else {
            throw .init("The lease wait must be between 0 and \(Int(WorkerProtocolLimits.maxWaitSeconds)) seconds, got \(waitSeconds.formatted()).")
        }
        guard drainSeconds >= 0 else { throw .init("--drain-seconds must not be negative.") }
        if let caFile, !FileManager.default.isReadableFile(atPath: caFile) {
            throw .init("--ca-file/SPOOL_CA_FILE names '\(caFile)', which is not a readable file.")
        }
        guard !workerID.isEmpty, workerID.utf8.count <= 200 else { throw .init("The worker id must be 1 to 200 bytes.") }
    }

    /// The defaults, with what `SPOOL_BROKER_URL` and `SPOOL_MODELS` (comma-separated), `SPOOL_CONCURRENCY`,
    /// `SPOOL_LEASE_SECONDS`, `SPOOL_DRAIN_SECONDS`, `SPOOL_API_KEY`, `SPOOL_WORKER_ID` and `SPOOL_CA_FILE` set.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(WorkerConfigurationError)
        -> WorkerConfiguration
    {
        func list(_ name: String) -> [String] {
            (environment[name] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
        func number(_ name: String) throws(WorkerConfigurationError) -> Double? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Double(text) else { throw .init("\(name) must be a number, got '\(text)'.") }
            return value
        }
        var configuration = WorkerConfiguration()
        if !list("SPOOL_BROKER_URL").isEmpty { configuration.brokerURLs = list("SPOOL_BROKER_URL") }
        configuration.models = list("SPOOL_MODELS")
        if let concurrency = try number("SPOOL_CONCURRENCY") {
            guard let whole = Int(exactly: concurrency) else { throw .init("SPOOL_CONCURRENCY must be a whole number.") }
            configuration.concurrency = whole
        }
        if let seconds = try number("SPOOL_LEASE_SECONDS") { configuration.leaseSeconds = seconds }
        if let seconds = try number("SPOOL_DRAIN_SECONDS") { configuration.drainSeconds = seconds }
        if let key = environment["SPOOL_API_KEY"], !key.isEmpty { configuration.apiKey = key }
        if let id = environment["SPOOL_WORKER_ID"], !id.isEmpty { configuration.workerID = id }
        if let file = environment["SPOOL_CA_FILE"], !file.isEmpty { configuration.caFile = file }
        return configuration
    }

    public static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(4).lowercased())"
    }
}

/// A worker configuration a person must fix.
public struct WorkerConfigurationError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
