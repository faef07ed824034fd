import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SpoolWorker

/// `spool-worker`: runs jobs from a broker with a command (`--exec`) or an inference server beside it (`--forward`).
@main
struct SpoolWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-worker",
        abstract: "Runs Spool jobs on this host: a command per job, or forwarded to a local inference server.",
        discussion: """
            Flags win over SPOOL_* environment variables, which win over the defaults.
            --exec: the job arrives as one JSON object on stdin; print {"emit": {...}}, {"log": "..."} and \
            {"outputs": {...}} lines on stdout. A non-zero exit fails the job (exit 75: retryable).
            --forward: the payload is POSTed as JSON and the JSON answer becomes the outputs.
            SIGTERM drains: no new jobs, running ones get --drain-seconds, the rest go back to the queue.
            """)

    @Option(
        name: .customLong("broker"),
        help: "Broker URL (repeatable; any replica). Env: SPOOL_BROKER_URL, comma-separated. Default: http://127.0.0.1:8080.")
    var brokers: [String] = []

    @Option(name: .customLong("model"), help: "A model to serve (repeatable). Env: SPOOL_MODELS, comma-separated.")
    var models: [String] = []

    @Option(help: "Jobs run at once. Env: SPOOL_CONCURRENCY. Default: 1.")
    var concurrency: Int?

    @Option(help: "The lease (claim timeout) asked for each job, in seconds. Env: SPOOL_LEASE_SECONDS. Default: 30.")
    var leaseSeconds: Double?

    @Option(help: "Seconds running jobs may take to finish on SIGTERM before they are handed back. Env: SPOOL_DRAIN_SECONDS. Default: 30.")
    var drainSeconds: Double?

    @Option(help: "Longest wait of one lease request (long-poll), in seconds. Default: 20.")
    var waitSeconds: Double?

    @Option(help: "API key sent as a Bearer token. Env: SPOOL_API_KEY.")
    var apiKey: String?

    @Option(help: "This worker's name in job records. Env: SPOOL_WORKER_ID. Default: <host>-<pid>-<random>.")
    var workerID: String?

    @Option(help: "PEM file of certificate authorities to trust for an https broker. Env: SPOOL_CA_FILE.")
    var caFile: String?

    @Option(help: "Run each job with this shell command (job JSON on stdin).")
    var exec: String?

    @Option(help: "POST each job's payload to this inference server URL.")
    var forward: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error. Env: SPOOL_LOG_LEVEL. Default: info.")
    var logLevel: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let configuration: WorkerConfiguration
        do {
            configuration = try makeConfiguration()
        } catch {
            throw ValidationError("\(error)")
        }

        let levelText = logLevel ?? environment["SPOOL_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: levelText) else {
            throw ValidationError("Unknown log level '\(levelText)': use trace, debug, info, notice, warning or error.")
        }
        var logger = Logger(label: "spool-worker")
        logger.logLevel = level

        switch (exec, forward) {
        case (let command?, nil):
            try await serve(Worker(configuration: configuration, handler: CommandHandler(command: command), logger: logger), logger)
        case (nil, let url?):
            guard let components = URLComponents(string: url), ["http", "https"].contains(components.scheme ?? "") else {
                throw ValidationError("--forward needs an http:// or https:// URL, got '\(url)'.")
            }
            let handler = ForwardHandler(url: url, concurrency: configuration.concurrency)
            do {
                try await serve(Worker(configuration: configuration, handler: handler, logger: logger), logger)
            } catch {
                await handler.shutdown()
                throw error
            }
            await handler.shutdown()
        default:
            throw ValidationError("Give exactly one of --exec \"<command>\" or --forward <url>.")
        }
    }

    /// The environment's configuration with the flags on top, validated.
    private func makeConfiguration() throws(WorkerConfigurationError) -> WorkerConfiguration {
        var configuration = try WorkerConfiguration.fromEnvironment()
        if !brokers.isEmpty { configuration.brokerURLs = brokers }
        if !models.isEmpty { configuration.models = models }
        if let concurrency { configuration.concurrency = concurrency }
        if let leaseSeconds { configuration.leaseSeconds = leaseSeconds }
        if let drainSeconds { configuration.drainSeconds = drainSeconds }
        if let waitSeconds { configuration.waitSeconds = waitSeconds }
        if let apiKey { configuration.apiKey = apiKey }
        if let workerID { configuration.workerID = workerID }
        if let caFile { configuration.caFile = caFile }
        try configuration.validate()
        return configuration
    }

    private func serve(_ worker: Worker, _ logger: Logger) async throws {
        let group = ServiceGroup(
            configuration: .init(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
