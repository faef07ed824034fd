import Foundation
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import ServiceLifecycle
import SpoolCore
import SpoolStore
import Synchronization

/// The worker protocol (docs/worker-protocol.md): lease with long-poll, heartbeat, complete, fail, release.
struct WorkerRoutes: Sendable {
    let store: Store
    let waiters: LeaseWaiters
    let configuration: BrokerConfiguration
    let metrics: BrokerMetrics
    /// When this broker last wrote each worker's row: one write per worker per few seconds, not per lease.
    let seen = WorkerSightings()
    /// Concurrent completions share one statement.
    let completions: CompletionGroupCommit

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        let worker = router.group("v1/worker")
        worker.post("lease", use: lease)
        worker.post("jobs/:request_id/heartbeat", use: heartbeat)
        worker.post("jobs/:request_id/complete") { request, context in
            let body = try CompleteRequest(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
            let result = try await complete(Self.requestID(context), body, context: context)
            if let refusal = result.refusal { throw refusal }
            guard let status = result.status else { throw SpoolError.internalError() }
            return JSONResponse.make(
                JobWriteResponse(request_id: result.request_id, status: status, retries: result.retries ?? 0),
                headers: result.replayed ? [.idempotentReplayed: "true"] : [:])
        }
        worker.post("complete", use: completeMany)
        worker.post("jobs/:request_id/fail") { request, context in
            let body = try FailRequest(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
            return try await finish(
                request: request, context: context, token: body.report.lease_token, end: .fail(error: body.error, retryable: body.retryable),
                report: attemptReport(body.report))
        }
        worker.post("jobs/:request_id/release") { request, context in
            let body = try ReleaseRequest(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
            return try await finish(
                request: request, context: context, token: body.lease_token, end: .release, report: attemptReport(body))
        }
    }

    /// Claims jobs at once if any are pending, else waits up to `wait_seconds` for a wake-up.
    ///
    /// A worker that hangs up while it waits gets nothing claimed in its name; jobs claimed for an
    /// answer that cannot be written go back to the queue at once, with no retry used.
    @Sendable func lease(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let lease = try LeaseRequest(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
        for model in lease.models { try context.caller.requireModel(model) }
        if seen.shouldRecord(lease.worker_id) {
            try await store.workers.sawLease(
                workerID: lease.worker_id, host: lease.host, models: lease.models, waitSeconds: lease.wait_seconds, on: store.client,
                logger: context.logger)
        }
        let (jobs, handedOver) = try await claimOrWait(lease, context: context)
        countClaimed(jobs)
        // A full batch hints that more are pending: pass the wake-up on to the next waiting lease.
        if jobs.count == lease.max_jobs, !handedOver {
            for model in Set(jobs.map(\.model)) { waiters.notify(model: model) }
        }
        return leaseAnswer(jobs, logger: context.logger)
    }

    /// The claimed jobs: at once, or after waiting for a wake-up (a NOTIFY, the fallback poll)
    /// while the client is still there. Kept apart from `lease` so that what a long-poll holds
    /// while it waits stays small.
    /// `handedOver`: the jobs were stored for this lease by a submit (nothing else was waiting).
    func claimOrWait(_ lease: LeaseRequest, context: BrokerRequestContext) async throws -> (jobs: [ClaimedJob], handedOver: Bool) {
        let claim = { @Sendable () async throws -> [ClaimedJob] in
            try await store.jobs.claim(
                models: lease.models, limit: lease.max_jobs, leaseSeconds: lease.lease_seconds,
                maxRunSeconds: configuration.maxRunSeconds, workerID: lease.worker_id, runningLimits: configuration.tenants.runningLimits,
                on: store.client, logger: context.logger)
        }
        if lease.wait_seconds <= 0 || Task.isShuttingDownGracefully || waiters.isClosed {
            return (try await claim(), false)
        }
        // Registered before the first claim: a submit that commits during it still wakes us.
        let terms = HandoverLease(
            models: lease.models, workerID: lease.worker_id, leaseSeconds: lease.lease_seconds, maxRunSeconds: configuration.maxRunSeconds)
        let ticket = waiters.register(models: lease.models, terms: terms)
        defer { waiters.unregister(ticket) }
        // A client that hangs up ends the wait at once; it is checked again before every claim.
        let watch = await context.connectionWatch()
        watch?.whenGone { [waiters] in waiters.wake(ticket) }
        defer { watch?.clearWhenGone() }
        let deadline = ContinuousClock.now + .seconds(lease.wait_seconds)
        var jobs: [ClaimedJob] = []
        var handedOver = false
        while watch?.isGone != true {
            jobs = try await claim()
            let remaining = deadline - .now
            guard jobs.isEmpty, remaining > .zero, !waiters.isClosed else { break }
            // A broker shutting down answers its long-polls at once rather than holding the shutdown.
            jobs = await withGracefulShutdownHandler {
                await waiters.wait(ticket, timeout: remaining)
            } onGracefulShutdown: {
                waiters.close()
            }
            handedOver = !jobs.isEmpty
            if handedOver { break }
        }
        if watch?.isGone == true, !jobs.isEmpty {
            // Hung up while the claim ran or a job was handed over: nobody will read the answer.
            try await handBack(jobs, logger: context.logger)
            return ([], false)
        }
        return (jobs, handedOver)
    }

    /// The lease's answer. With jobs in it, it is written by hand so a failed write is noticed:
    /// the jobs then go back to the queue.
    func leaseAnswer(_ jobs: [ClaimedJob], logger: Logger) -> Response {
        let answer = LeaseResponse(jobs: jobs.map(\.leased))
        guard !jobs.isEmpty else { return JSONResponse.make(answer) }
        return handOver(jobs, answer: answer.jsonValue, logger: logger)
    }

    /// An answer carrying claimed jobs, written by hand so a failed write is noticed: the jobs then
    /// go back to the queue instead of waiting out their lease.
    func handOver(_ jobs: [ClaimedJob], answer: JSONValue, logger: Logger) -> Response {
        let handover = LeaseHandover(jobs: jobs, routes: self, logger: logger)
        let bytes = ByteBuffer(bytes: answer.jsonBytes)
        let body = ResponseBody(contentLength: bytes.readableBytes) { writer in
            try await writer.write(bytes)
            try await writer.finish(nil)
            handover.markDelivered()
        }
        return Response(status: .ok, headers: [.contentType: "application/json"], body: body)
    }

    func countClaimed(_ jobs: [ClaimedJob]) {
        for job in jobs {
            metrics.count("claimed", model: job.model)
            metrics.recordQueueWait(model: job.model, seconds: job.queueWaitSeconds)
        }
    }

    /// Returns claimed jobs whose answer will not be read to the queue, as if never claimed.
    func handBack(_ jobs: [ClaimedJob], logger: Logger) async throws {
        let returned = try await store.jobs.handBack(jobs.map { ($0.requestID, $0.leaseToken) }, on: store.client, logger: logger)
        for job in jobs { metrics.count("undelivered", model: job.model) }
        logger.notice("a worker hung up before its lease answer; its jobs went back to the queue", metadata: ["jobs": "\(returned)"])
    }

    @Sendable func heartbeat(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let body = try HeartbeatRequest(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
        let requestID = try Self.requestID(context)
        try await requireModel(of: requestID, context: context)
        let outcome = try await store.jobs.heartbeat(
            requestID: requestID, leaseToken: try Self.leaseToken(body.report.lease_token), leaseSeconds: body.lease_seconds,
            report: attemptReport(body.report), on: store.client, logger: context.logger)
        switch outcome {
        case .success(let beat):
            try await keepWithinLogCap(beat.logs, logger: context.logger)
            return JSONResponse.make(HeartbeatResponse(lease_expires_at: beat.leaseExpiresAt, stop_reason: beat.stopReason))
        case .failure(let refusal):
            throw Self.error(for: refusal, requestID: requestID)
        }
    }

    /// Several completions in one request; one result per completion, in order. The request's
    /// completions join the shared statement together (one wait, not one task each).
    @Sendable func completeMany(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let items = try CompleteManyRequest.items(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
        var results = [CompleteResult?](repeating: nil, count: items.count)
        var accepted: [(index: Int, completion: Completion)] = []
        for (index, item) in items.enumerated() {
            let body: CompleteRequest
            switch item.complete {
            case .success(let complete): body = complete
            case .failure(let refusal):
                results[index] = CompleteResult(request_id: item.requestID, refusal: refusal)
                continue
            }
            guard let id = UUID(uuidString: item.requestID) else {
                let refusal = SpoolError.notFound("No job '\(item.requestID)': request ids are UUIDs.", code: "job_not_found")
                results[index] = CompleteResult(request_id: item.requestID, refusal: refusal)
                continue
            }
            switch try await completion(id, body, context: context) {
            case .success(let completion): accepted.append((index, completion))
            case .failure(let refusal): results[index] = CompleteResult(request_id: item.requestID, refusal: refusal)
            }
        }
        let written = await completions.writeMany(accepted.map(\.completion))
        for ((index, completion), outcome) in zip(accepted, written) {
            do {
                results[index] = try await settle(completion, outcome.get(), context: context)
            } catch let error as PSQLError where error.refusesAValue {
                results[index] = CompleteResult(request_id: items[index].requestID, refusal: ErrorMiddleware.refusedValue(error))
            }
        }
        return JSONResponse.make(
            CompleteManyResponse(
                results: results.compactMap { $0 }.map { result in
                    CompleteManyResult(
                        request_id: result.request_id, status: result.status, retries: result.retries,
                        refusal: result.refusal)
                }))
    }

    struct CompleteResult: Sendable {
        var request_id: String
        var status: JobStatus? = nil
        var retries: Int32? = nil
        /// Why the completion was refused, as a single complete would answer it.
        var refusal: SpoolError? = nil
        var replayed = false
    }

    /// One completion: through the shared statement, and through `finish` when the group left it
    /// (to tell a retried complete from a lost lease).
    func complete(_ requestID: UUID, _ body: CompleteRequest, context: BrokerRequestContext) async throws -> CompleteResult {
        switch try await completion(requestID, body, context: context) {
        case .success(let completion): return try await settle(completion, completions.complete(completion), context: context)
        case .failure(let refusal): return CompleteResult(request_id: requestID.uuidString.lowercased(), refusal: refusal)
        }
    }

    /// The completion a complete asks for, or why it is refused before any write; an outage throws.
    func completion(_ requestID: UUID, _ body: CompleteRequest, context: BrokerRequestContext) async throws -> Result<Completion, SpoolError> {
        do {
            let token = try Self.leaseToken(body.report.lease_token)
            try await requireModel(of: requestID, context: context)
            return .success(Completion(requestID: requestID, leaseToken: token, outputs: body.outputs, report: attemptReport(body.report)))
        } catch let error as SpoolError {
            return .failure(error)
        }
    }

    /// The answer to a completion the shared statement wrote (`done`), or, when it left it (a
    /// retried complete, a lost lease), what `finish` says of it.
    func settle(_ completion: Completion, _ done: Completed?, context: BrokerRequestContext) async throws -> CompleteResult {
        let id = completion.requestID.uuidString.lowercased()
        if let done {
            try await keepWithinLogCap(done.logs, logger: context.logger)
            metrics.count("completed", model: done.model)
            metrics.recordRunTime(model: done.model, seconds: done.runSeconds)
            return CompleteResult(request_id: id, status: .done, retries: done.retries)
        }
        switch try await store.jobs.finish(
            requestID: completion.requestID, leaseToken: completion.leaseToken, end: .complete(outputs: completion.outputs),
            report: completion.report, retryLimit: configuration.retryLimit, on: store.client, logger: context.logger)
        {
        case .success(let finished):
            try await keepWithinLogCap(finished.logs, logger: context.logger)
            if !finished.replayed {
                metrics.count(LeaseReaper.event(finished.status), model: finished.model)
                metrics.recordRunTime(model: finished.model, seconds: finished.runSeconds)
            }
            return CompleteResult(request_id: id, status: finished.status, retries: finished.retries, replayed: finished.replayed)
        case .failure(let refusal):
            return CompleteResult(request_id: id, refusal: Self.error(for: refusal, requestID: completion.requestID))
        }
    }

    func finish(
        request: Request, context: BrokerRequestContext, token: String, end: AttemptEnd, report: AttemptReport
    ) async throws -> Response {
        let requestID = try Self.requestID(context)
        try await requireModel(of: requestID, context: context)
        let finished = try await finish(requestID: requestID, leaseToken: try Self.leaseToken(token), end: end, report: report, context: context)
        return JSONResponse.make(
            JobWriteResponse(request_id: requestID.uuidString.lowercased(), status: finished.status, retries: finished.retries),
            headers: finished.replayed ? [.idempotentReplayed: "true"] : [:])
    }

    /// Ends an attempt (fenced by its lease token) and counts it; a refusal is thrown as its HTTP error.
    func finish(
        requestID: UUID, leaseToken: UUID, end: AttemptEnd, report: AttemptReport, context: BrokerRequestContext
    ) async throws -> FinishOutcome {
        let outcome = try await store.jobs.finish(
            requestID: requestID, leaseToken: leaseToken, end: end, report: report,
            retryLimit: configuration.retryLimit, on: store.client, logger: context.logger)
        switch outcome {
        case .success(let finished):
            try await keepWithinLogCap(finished.logs, logger: context.logger)
            if !finished.replayed {
                let handedBack = end == .release && finished.status == .pending
                metrics.count(handedBack ? "released" : LeaseReaper.event(finished.status), model: finished.model)
                metrics.recordRunTime(model: finished.model, seconds: finished.runSeconds)
            }
            return finished
        case .failure(let refusal):
            throw Self.error(for: refusal, requestID: requestID)
        }
    }

    func requireModel(of requestID: UUID, context: BrokerRequestContext) async throws {
        try await context.caller.requireModel(ofJob: requestID, store: store, logger: context.logger)
    }

    /// A write's emits and log lines; a write with more lines than a job keeps brings only its newest.
    func attemptReport(_ report: LeaseReport) -> AttemptReport {
        AttemptReport(infoPatch: report.info ?? [:], logs: configuration.logLimits.newest(report.logs ?? []))
    }

    /// Drops a job's oldest log lines once it is over its cap, down to 90% of it so trims are rare.
    func keepWithinLogCap(_ logs: StoredLogs?, logger: Logger) async throws {
        let limits = configuration.logLimits
        guard let logs, limits.exceeded(by: logs) else { return }
        let dropped = try await store.jobs.trimLogs(
            jobID: logs.jobID, keepLines: limits.maxLines * 9 / 10, keepBytes: limits.maxBytes * 9 / 10, on: store.client, logger: logger)
        logger.debug("dropped a job's oldest log lines at its cap", metadata: ["job_id": "\(logs.jobID)", "dropped": "\(dropped)"])
    }

    static func requestID(_ context: BrokerRequestContext) throws -> UUID {
        let text = context.parameters.get("request_id") ?? ""
        guard let id = UUID(uuidString: text) else {
            throw SpoolError.notFound("No job '\(text)': request ids are UUIDs.", code: "job_not_found", param: "request_id")
        }
        return id
    }

    static func leaseToken(_ text: String) throws -> UUID {
        guard let token = UUID(uuidString: text) else {
            throw SpoolError.invalidRequest(
                "'lease_token' must be the token the lease answered with (a UUID).", code: "invalid_field", param: "lease_token")
        }
        return token
    }

    static func error(for refusal: LeaseRefusal, requestID: UUID) -> SpoolError {
        switch refusal {
        case .infoTooLarge:
            .tooLarge(
                "This emit would take the job's info past \(JobsTable.maxInfoBytes) bytes; nothing was written and the lease was not extended. Emit less (top-level keys replace earlier ones).",
                code: "info_too_large", param: "info")
        case .notFound:
            .notFound("No job '\(requestID.uuidString.lowercased())'.", code: "job_not_found", param: "request_id")
        case .leaseLost(let status, let attempt):
            .conflict(
                "This lease no longer holds the job: it is \(status.rawValue) (attempt \(attempt)). The lease expired or the job moved on; nothing was written. Stop working on it and do not report it.",
                code: "lease_lost", param: "lease_token", extra: ["status": .string(status.rawValue), "attempt": .int(Int64(attempt))])
        }
    }
}

/// Claimed jobs on their way to a worker: unless the answer is written, they go back to the queue
/// when the response is dropped, instead of waiting out their lease.
final class LeaseHandover: Sendable {
    private let jobs: [ClaimedJob]
    private let routes: WorkerRoutes
    private let logger: Logger
    private let delivered = Mutex(false)

    init(jobs: [ClaimedJob], routes: WorkerRoutes, logger: Logger) {
        self.jobs = jobs
        self.routes = routes
        self.logger = logger
    }

    func markDelivered() { delivered.withLock { $0 = true } }

    deinit {
        guard !delivered.withLock({ $0 }) else { return }
        let (jobs, routes, logger) = (self.jobs, self.routes, self.logger)
        Task {
            do {
                try await routes.handBack(jobs, logger: logger)
            } catch {
                logger.error("could not hand back the jobs of an undelivered lease; they wait for their lease", metadata: ["error": "\(error)"])
            }
        }
    }
}

/// When this broker last recorded each worker, so a busy worker's leases cost one write every few seconds.
final class WorkerSightings: Sendable {
    private let last = Mutex<[String: ContinuousClock.Instant]>([:])
    static let interval: Duration = .seconds(5)

    func shouldRecord(_ workerID: String) -> Bool {
        let now = ContinuousClock.now
        return last.withLock { last in
            if let previous = last[workerID], now - previous < Self.interval { return false }
            if last.count > 100_000 { last.removeAll() }
            last[workerID] = now
            return true
        }
    }
}
