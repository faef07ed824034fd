import Logging
import ServiceLifecycle
import SpoolWorker

/// Upper-cases `payload.prompt`, reporting progress as it goes.
struct Shout: JobHandler {
    func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] {
        guard let prompt = job.payload["prompt"]?.stringValue else {
            throw JobFailure("payload.prompt must be a string")
        }
        let steps = job.payload["steps"].flatMap { if case .int(let n) = $0 { Int(n) } else { nil } } ?? 3
        for step in 0..<steps {
            try await Task.sleep(for: .milliseconds(200))
            context.emit(["progress": .double(Double(step + 1) / Double(steps))])
        }
        context.log("shouted \(prompt.count) characters")
        return ["text": .string(prompt.uppercased()), "attempt": .int(Int64(job.attempt))]
    }
}

// SPOOL_BROKER_URL, SPOOL_MODELS, SPOOL_CONCURRENCY, SPOOL_API_KEY … configure it.
var configuration = try WorkerConfiguration.fromEnvironment()
if configuration.models.isEmpty { configuration.models = ["demo/shout"] }
let logger = Logger(label: "shout-worker")
let worker = try Worker(configuration: configuration, handler: Shout(), logger: logger)
try await ServiceGroup(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
