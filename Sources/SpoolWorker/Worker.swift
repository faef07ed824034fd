import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// The worker loop: leases jobs for free slots, runs each with the handler while its lease is
/// kept alive, reports the result, and drains on graceful shutdown (SIGTERM).
///
/// ```swift
/// let worker = try Worker(configuration: configuration, handler: MyHandler(), logger: logger)
/// try await ServiceGroup(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger).run()
/// ```
public struct Worker: Service {
    public let configuration: WorkerConfiguration
    let handler: any JobHandler
    let logger: Logger

    public init(configuration: WorkerConfiguration, handler: some JobHandler, logger: Logger) throws {
        try configuration.validate()
        self.configuration = configuration
        self.handler = handler
        self.logger = logger
    }

    /// Runs until a graceful shutdown (or cancellation), then drains: no new leases, running jobs
    /// get `drainSeconds` to finish, and the rest are handed back for another worker to take at once.
    public func run() async throws {
        let broker = BrokerConnection(
            urls: configuration.brokerURLs, apiKey: configuration.apiKey, connections: configuration.concurrency * 3 + 2,
            caFile: configuration.caFile, logger: logger)
        let running = RunningJobs()
        let completions = CompletionSender(broker: broker, retryFor: .seconds(max(configuration.leaseSeconds * 2, 60)))
        logger.info(
            "worker started",
            metadata: [
                "worker_id": "\(configuration.workerID)", "models": "\(configuration.models.joined(separator: ","))",
                "concurrency": "\(configuration.concurrency)", "brokers": "\(configuration.brokerURLs.joined(separator: ","))",
            ])
        await cancelWhenGracefulShutdown { await leaseLoop(broker: broker, running: running, completions: completions) }
        await drain(running)
        await broker.shutdown()
        logger.info("worker stopped", metadata: ["worker_id": "\(configuration.workerID)"])
    }

    /// How long a lease waits for busy slots to free before asking for the free ones.
    static let leaseLinger: Duration = .milliseconds(2)

    /// Leases as many jobs as there are free slots, long-polling when none are pending.
    private func leaseLoop(broker: BrokerConnection, running: RunningJobs, completions: CompletionSender) async {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10))
        var failures = 0
        // Looked up once: Foundation asks the resolver every time.
        let host = ProcessInfo.processInfo.hostName
        while !Task.isCancelled {
            guard configuration.concurrency - running.count > 0 else {
                await running.changed.wait(timeout: .seconds(1))
                continue
            }
            // Short jobs free their slots moments after the lease that brought them: waiting that
            // moment makes one lease (and one complete) of many jobs instead of many of few.
            // Long jobs lose at most the linger per lease.
            let lingerEnd = ContinuousClock.now + Self.leaseLinger
            while running.count > 0, ContinuousClock.now < lingerEnd, !Task.isCancelled {
                await running.changed.wait(timeout: lingerEnd - .now)
            }
            let free = configuration.concurrency - running.count
            do {
                let jobs = try await broker.lease(
                    LeaseRequest(
                        worker_id: configuration.workerID, models: configuration.models, max_jobs: free,
                        wait_seconds: configuration.waitSeconds, lease_seconds: configuration.leaseSeconds,
                        host: host))
                backoff.reset()
                failures = 0
                for job in jobs { start(job, broker: broker, running: running, completions: completions) }
            } catch {
                if Task.isCancelled { break }
                failures += 1
                if case BrokerCallError.refused(let status, let message) = error {
                    logger.error("the broker refused the lease request", metadata: ["status": "\(status)", "reason": "\(message)"])
                } else if failures % configuration.brokerURLs.count != 0 {
                    // Another replica may be up: try it before backing off.
                    continue
                }
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    private func start(_ leased: LeasedJob, broker: BrokerConnection, running: RunningJobs, completions: CompletionSender) {
        running.add(leased.request_id)
        Task {
            await runJob(leased, broker: broker, running: running, completions: completions)
            running.remove(leased.request_id)
        }
    }

    /// Runs one job to its end and reports it: complete, fail, release when drained, or nothing when the lease was lost.
    private func runJob(_ leased: LeasedJob, broker: BrokerConnection, running: RunningJobs, completions: CompletionSender) async {
        let metadata: Logger.Metadata = ["request_id": "\(leased.request_id)", "model": "\(leased.model)", "attempt": "\(leased.attempt)"]
        logger.debug("job started", metadata: metadata)
        let reports = Signal()
        let context = JobContext(
            onReport: { reports.raise() },
            uploader: { path, name, contentType in
                try await broker.uploadFile(
                    requestID: leased.request_id, leaseToken: leased.lease_token, path: path, name: name, contentType: contentType)
            })
        let job = Job(
            requestID: leased.request_id, model: leased.model, payload: leased.payload, info: leased.info, attempt: leased.attempt,
            priority: leased.priority, path: leased.path)
        let handler = self.handler
        let handlerTask = Task { try await handler.run(job, context: context) }
        running.attach(leased.request_id, handlerTask)
        let keeper = LeaseKeeper(
            job: leased, context: context, reports: reports, broker: broker, configuration: configuration, logger: logger,
            interruptHandler: { handlerTask.cancel() })
        let keeperTask = Task { await keeper.run() }
        let result = await handlerTask.result
        keeperTask.cancel()
        // The slot is free once the handler is done: the next lease need not wait for this report.
        running.markReporting(leased.request_id)
        if await keeperTask.value == .leaseLost { return }

        let report = LeaseReport(lease_token: leased.lease_token, pending: context.takeReport())
        // Keep trying through a broker outage for as long as the lease could have lasted, and then some.
        let deadline = ContinuousClock.now + .seconds(max(configuration.leaseSeconds * 2, 60))
        do {
            let answer: JobWriteResponse
            switch result {
            case .success(let outputs):
                // Completions of many short jobs share requests; see CompletionSender.
                let result = try await completions.complete(
                    CompleteManyItem(
                        request_id: leased.request_id,
                        complete: CompleteRequest(report, outputs: outputs)))
                if let error = result.error {
                    throw error.code == "lease_lost"
                        ? BrokerCallError.leaseLost(error.message) : BrokerCallError.refused(status: error.http_status, message: error.message)
                }
                answer = JobWriteResponse(request_id: result.request_id, status: result.status ?? .done, retries: result.retries ?? 0)
            case .failure where running.isDrained(leased.request_id):
                answer = try await broker.finish(
                    requestID: leased.request_id, action: "release",
                    body: report, until: .now + .seconds(10))
            case .failure(let error):
                let failure = Self.failure(from: error, stopReason: context.stopReason)
                answer = try await broker.finish(
                    requestID: leased.request_id, action: "fail",
                    body: FailRequest(report, error: failure.message, retryable: failure.retryable),
                    until: deadline)
            }
            logger.debug("job reported", metadata: metadata.merging(["status": "\(answer.status.rawValue)"]) { $1 })
        } catch BrokerCallError.leaseLost(let message) {
            logger.warning("the job's result was refused: the lease moved on", metadata: metadata.merging(["reason": "\(message)"]) { $1 })
        } catch {
            logger.error(
                "could not report the job; the broker requeues it when its lease expires",
                metadata: metadata.merging(["error": "\(error)"]) { $1 })
        }
    }

    static func failure(from error: any Error, stopReason: StopReason?) -> JobFailure {
        if let stopReason, error is CancellationError {
            return JobFailure("Stopped as the broker asked (\(stopReason.rawValue)).")
        }
        if let failure = error as? JobFailure { return failure }
        return JobFailure(String(describing: error))
    }

    /// Waits for running jobs up to `drainSeconds`, then hands the rest back.
    private func drain(_ running: RunningJobs) async {
        // A cancelled worker stops now (waits return at once under cancellation): its handlers are
        // cancelled and its unreported jobs are requeued when their leases expire.
        guard !Task.isCancelled else {
            running.drainAll()
            return
        }
        let deadline = ContinuousClock.now + .seconds(configuration.drainSeconds)
        if running.total > 0 {
            logger.notice("draining: no new leases; waiting for running jobs", metadata: ["running": "\(running.total)"])
        }
        while running.total > 0, ContinuousClock.now < deadline {
            await running.changed.wait(timeout: deadline - .now)
        }
        if running.total > 0 {
            logger.notice("drain period over; handing unfinished jobs back", metadata: ["running": "\(running.total)"])
            running.drainAll()
            // Releases get a few seconds; a job still unreported after that is requeued when its lease expires.
            let releaseDeadline = ContinuousClock.now + .seconds(15)
            while running.total > 0, ContinuousClock.now < releaseDeadline {
                await running.changed.wait(timeout: releaseDeadline - .now)
            }
        }
    }
}

/// The jobs a worker is running, for free-slot counting and for draining.
final class RunningJobs: Sendable {
    private struct Entry {
        var handler: Task<[String: JSONValue], any Error>?
        var drained = false
        /// The handler has returned; its result is being reported.
        var reporting = false
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// Raised whenever a handler returns or a job ends.
    let changed = Signal()

    /// Jobs whose handler runs: what takes a concurrency slot.
    var count: Int { entries.withLock { $0.values.count { !$0.reporting } } }

    /// Jobs running or being reported: what a drain waits for.
    var total: Int { entries.withLock { $0.count } }

    func markReporting(_ requestID: String) {
        entries.withLock { $0[requestID]?.reporting = true }
        changed.raise()
    }

    func add(_ requestID: String) {
        entries.withLock { $0[requestID] = Entry() }
    }

    func attach(_ requestID: String, _ handler: Task<[String: JSONValue], any Error>) {
        let drainedAlready = entries.withLock { entries -> Bool in
            entries[requestID]?.handler = handler
            return entries[requestID]?.drained ?? false
        }
        if drainedAlready { handler.cancel() }
    }

    func remove(_ requestID: String) {
        entries.withLock { _ = $0.removeValue(forKey: requestID) }
        changed.raise()
    }

    func isDrained(_ requestID: String) -> Bool {
        entries.withLock { $0[requestID]?.drained ?? false }
    }

    /// Cancels every running handler; their jobs are released instead of failed.
    func drainAll() {
        let handlers = entries.withLock { entries -> [Task<[String: JSONValue], any Error>] in
            for key in entries.keys { entries[key]?.drained = true }
            return entries.values.compactMap(\.handler)
        }
        for handler in handlers { handler.cancel() }
    }
}
