import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// RunPod's worker protocol (`runpod.serverless.start`) mapped onto leases
/// (docs/worker-protocol.md#runpod).
///
/// A take is a lease of three ping intervals; a ping naming a job is its heartbeat; a job no longer
/// named expires and is requeued; job-done completes or fails it, or (`IN_PROGRESS`) is an emit;
/// job-stop tells the worker which of its jobs were cancelled or ran out of time. The worker sees
/// each attempt as `<request id>.<lease token>`, so every write is fenced by the token.
struct RunPodWorkerRoutes: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    let metrics: BrokerMetrics
    let leases: WorkerRoutes

    /// How long a take waits for a job: well under the 90 s after which the worker gives up on it.
    static let takeWaitSeconds: Double = 30
    /// How long a job-stop poll waits for a stop, and how often it looks meanwhile.
    static let stopWaitSeconds: Double = 30
    static let stopPollInterval: Duration = .seconds(1)
    /// The most job ids one ping may name.
    static let maxPingedJobs = 1000

    var leaseSeconds: Double { configuration.runpodPingSeconds * 3 }

    /// One job (`job-take`) or a list (`job-take-batch`), or 204 when none came within the wait.
    func take(
        _ endpoint: String, worker: String, batchSize: Int, batch: Bool, request: Request, context: BrokerRequestContext
    ) async throws -> Response {
        let worker = try Self.workerID(worker)
        if leases.seen.shouldRecord(worker) {
            try await store.workers.sawLease(
                workerID: worker, host: Self.host(context), models: [endpoint], waitSeconds: Self.takeWaitSeconds, on: store.client,
                logger: context.logger)
        }
        let lease = LeaseRequest(
            worker_id: worker, models: [endpoint], max_jobs: batchSize, wait_seconds: Self.takeWaitSeconds, lease_seconds: leaseSeconds)
        let jobs = try await leases.claimOrWait(lease, context: context).jobs
        guard !jobs.isEmpty else { return Response(status: .noContent) }
        leases.countClaimed(jobs)
        let taken: [JSONValue] = jobs.map { job in
            ["id": .string(RunPodAttemptID(requestID: job.requestID, leaseToken: job.leaseToken).description), "input": .object(job.payload)]
        }
        return leases.handOver(jobs, answer: batch ? .array(taken) : taken[0], logger: context.logger)
    }

    /// A heartbeat for every job the ping names (`job_id=a,b`); ids no longer held are left to
    /// their lease. Answers `{}` either way: the worker reads nothing from it.
    func ping(_ endpoint: String, worker: String, request: Request, context: BrokerRequestContext) async throws -> Response {
        let worker = try Self.workerID(worker)
        if leases.seen.shouldRecord(worker) {
            try await store.workers.sawLease(
                workerID: worker, host: Self.host(context), models: [endpoint], waitSeconds: 0, on: store.client, logger: context.logger)
        }
        let ids = (request.uri.queryParameters.get("job_id") ?? "").split(separator: ",").prefix(Self.maxPingedJobs)
        for attempt in ids.compactMap(RunPodAttemptID.init) {
            _ = try await store.jobs.heartbeat(
                requestID: attempt.requestID, leaseToken: attempt.leaseToken, leaseSeconds: leaseSeconds, report: AttemptReport(),
                on: store.client, logger: context.logger)
        }
        return JSONResponse.make([:] as JSONValue)
    }

    /// Long-polls for the worker's jobs that were cancelled or ran out of time: `{"jobsToStop": [ids]}`.
    /// Each stop is told once, and ends the attempt as the stop says (the worker sends no result for it).
    func stop(_ endpoint: String, worker: String, context: BrokerRequestContext) async throws -> Response {
        let worker = try Self.workerID(worker)
        let watch = await context.connectionWatch()
        let deadline = ContinuousClock.now + .seconds(Self.stopWaitSeconds)
        var signals: [StopSignal] = []
        while watch?.isGone != true, !Task.isShuttingDownGracefully, ContinuousClock.now < deadline {
            signals = try await store.jobs.takeStopSignals(model: endpoint, workerID: worker, on: store.client, logger: context.logger)
            if !signals.isEmpty { break }
            // Cancelled (the task group) when the broker shuts down gracefully.
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.stopPollInterval) }
        }
        guard !signals.isEmpty else { return Response(status: .noContent) }
        // Their leases ended: settle them now rather than at the next sweep.
        for job in try await store.jobs.requeueExpiredLeases(retryLimit: configuration.retryLimit, on: store.client, logger: context.logger) {
            metrics.count(LeaseReaper.event(job.status), model: job.model)
        }
        let ids = signals.map { JSONValue.string(RunPodAttemptID(requestID: $0.requestID, leaseToken: $0.leaseToken).description) }
        return JSONResponse.make(["jobsToStop": .array(ids)] as JSONValue)
    }

    /// The attempt's result (`{"output"}`), its failure (`{"error"}`), or a progress update
    /// (`{"status": "IN_PROGRESS", "output"}`), as JSON sent form-encoded.
    ///
    /// A write from an attempt that no longer holds the job is refused with 409, which the worker
    /// does not retry; the same result repeated is answered as a replay.
    func done(_ endpoint: String, job: String, request: Request, context: BrokerRequestContext) async throws -> Response {
        let attempt = try Self.attempt(job)
        let done = try RunPodDone(json: try await request.jsonBody(limit: configuration.maxBodyBytes, formEncodedJSON: true))
        let end: AttemptEnd
        switch done {
        case .progress(let progress):
            let outcome = try await store.jobs.heartbeat(
                requestID: attempt.requestID, leaseToken: attempt.leaseToken, leaseSeconds: leaseSeconds,
                report: AttemptReport(infoPatch: ["progress": progress]), on: store.client, logger: context.logger)
            switch outcome {
            case .success:
                return JSONResponse.make(["id": .string(job), "status": "IN_PROGRESS"] as JSONValue)
            case .failure(let refusal):
                // Progress is sent from its own thread and may land after the result: harmless from the attempt that ended the job.
                if try await store.jobs.endedBy(
                    requestID: attempt.requestID, leaseToken: attempt.leaseToken, on: store.client, logger: context.logger)
                {
                    return JSONResponse.make(["id": .string(job), "ignored": "the job had already ended"] as JSONValue)
                }
                throw WorkerRoutes.error(for: refusal, requestID: attempt.requestID)
            }
        case .failure(let message):
            end = .fail(error: message, retryable: false)
        case .output(let output):
            end = .complete(outputs: output.map { ["output": $0] } ?? [:])
        }
        let finished = try await leases.finish(
            requestID: attempt.requestID, leaseToken: attempt.leaseToken, end: end, report: AttemptReport(), context: context)
        return JSONResponse.make(
            ["id": .string(job), "status": .string(RunPodStatus(finished.status, errorType: nil).rawValue)] as JSONValue,
            headers: finished.replayed ? [.idempotentReplayed: "true"] : [:])
    }

    /// One chunk of a generator's output (`{"output": chunk}`), kept for `/stream/{id}`.
    func streamChunk(_ endpoint: String, job: String, request: Request, context: BrokerRequestContext) async throws -> Response {
        let attempt = try Self.attempt(job)
        let body = try await request.jsonBody(limit: configuration.maxBodyBytes, formEncodedJSON: true)
        guard let members = body.objectValue else {
            throw SpoolError.invalidRequest("A stream chunk must be a JSON object {\"output\": …}, not \(body.typeName).", code: "invalid_body")
        }
        switch try await store.streamChunks.append(
            requestID: attempt.requestID, leaseToken: attempt.leaseToken, chunk: members["output"] ?? .null, on: store.client,
            logger: context.logger)
        {
        case .appended(let seq):
            return JSONResponse.make(["id": .string(job), "seq": .int(Int64(seq))] as JSONValue)
        case .refused(let refusal):
            throw WorkerRoutes.error(for: refusal, requestID: attempt.requestID)
        case .full:
            throw SpoolError.tooLarge(
                "This chunk would take the job past the \(JobStreamChunksTable.maxChunksPerJob) chunks or \(JobStreamChunksTable.maxBytesPerJob >> 20) MiB of chunks a job keeps; nothing was stored.",
                code: "stream_too_long")
        }
    }

    static func attempt(_ text: String) throws -> RunPodAttemptID {
        guard let attempt = RunPodAttemptID(text) else {
            throw SpoolError.notFound(
                "No job '\(text.prefix(100))': a RunPod worker names a job by the id its take answered (<request id>.<lease token>).",
                code: "job_not_found", param: "id")
        }
        return attempt
    }

    static func workerID(_ text: String) throws -> String {
        guard !text.isEmpty, text.unicodeScalars.count <= 200, text.unicodeScalars.allSatisfy({ $0.value > 0x1F && $0.value != 0x7F }) else {
            throw SpoolError.invalidRequest(
                "The worker id (RUNPOD_POD_ID) must be 1 to 200 printable characters.", code: "invalid_field", param: "worker_id")
        }
        return text
    }

    /// Where the worker connects from, for operators: RunPod's worker does not say its host.
    static func host(_ context: BrokerRequestContext) -> String? {
        context.channel?.remoteAddress?.ipAddress
    }
}
