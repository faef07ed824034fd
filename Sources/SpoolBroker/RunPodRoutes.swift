import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// RunPod's serverless APIs under `/v2/{endpoint_id}/…`: the client's (`runpod.Endpoint`, with
/// `RUNPOD_ENDPOINT_BASE_URL=<broker>/v2`) and the worker's (`runpod.serverless.start`, pointed
/// here by `spool-broker runpod-env`). The endpoint id is the model; the jobs are the same jobs
/// the other APIs see. Keys may be sent bare (`Authorization: <key>`) as well as `Bearer <key>`.
struct RunPodRoutes: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    let submitter: Submitter
    let watchers: JobWatchers
    let metrics: BrokerMetrics
    let workerSide: RunPodWorkerRoutes

    static let pathPrefix = "/v2/"
    /// The longest `runsync` waits for the job to end before answering its status (`?wait=` ms may shorten or lengthen it).
    static let runSyncWaitSeconds: Double = 60
    static let runSyncMaxWaitSeconds: Double = 300

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        let v2 = router.group("v2")
        v2.get("**", use: dispatch)
        v2.post("**", use: dispatch)
    }

    /// The catch-all's route, whose methods `allowedMethods(path:)` narrows for each path.
    static let route: RouterPath = "v2/**"

    /// The methods a path under `/v2/` answers (for a 405's Allow): none when it names no RunPod route.
    @Sendable static func allowedMethods(path: Substring) -> [HTTPRequest.Method] {
        guard path.hasPrefix(pathPrefix) else { return [] }
        return RunPodPath.allowedMethods(segments: path.dropFirst(pathPrefix.count).split(separator: "/"))
    }

    @Sendable func dispatch(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let segments = context.parameters.getCatchAll()
        guard let path = RunPodPath.parse(method: request.method, segments: segments) else {
            let allowed = RunPodPath.allowedMethods(segments: segments)
            if !allowed.isEmpty {
                throw SpoolError.methodNotAllowed(method: request.method.rawValue, path: request.uri.path, allowed: allowed.map(\.rawValue))
            }
            throw SpoolError.notFound(
                "No RunPod route \(request.method) \(request.uri.path): see docs/client-api.md#runpod and docs/worker-protocol.md#runpod.",
                code: "unknown_route")
        }
        switch path.action {
        case .run, .runSync, .health, .purgeQueue, .status, .stream, .cancel:
            try context.caller.require(.client)
        case .take, .takeBatch, .stop, .ping, .done, .streamChunk:
            try context.caller.require(.worker)
            try context.caller.requireModel(path.endpoint)
        }
        let endpoint = path.endpoint
        switch path.action {
        case .run: return try await run(endpoint, request: request, context: context, waitSeconds: nil)
        case .runSync: return try await run(endpoint, request: request, context: context, waitSeconds: runSyncWait(request))
        case .health: return try await health(endpoint, context: context)
        case .purgeQueue: return try await purgeQueue(endpoint, context: context)
        case .status(let id): return try await status(endpoint, id: id, context: context)
        case .stream(let id): return try await stream(endpoint, id: id, context: context)
        case .cancel(let id): return try await cancel(endpoint, id: id, context: context)
        case .take(let worker):
            return try await workerSide.take(endpoint, worker: worker, batchSize: 1, batch: false, request: request, context: context)
        case .takeBatch(let worker):
            let size = Int(request.uri.queryParameters.get("batch_size") ?? "1") ?? 1
            return try await workerSide.take(
                endpoint, worker: worker, batchSize: min(max(size, 1), WorkerProtocolLimits.maxJobsPerLease), batch: true, request: request,
                context: context)
        case .stop(let worker): return try await workerSide.stop(endpoint, worker: worker, context: context)
        case .ping(let worker): return try await workerSide.ping(endpoint, worker: worker, request: request, context: context)
        case .done(_, let job): return try await workerSide.done(endpoint, job: job, request: request, context: context)
        case .streamChunk(_, let job): return try await workerSide.streamChunk(endpoint, job: job, request: request, context: context)
        }
    }

    /// `/run` answers `{id, status}` at once; `/runsync` waits up to `waitSeconds` for the job to end
    /// and answers its status then, with the output when it completed.
    func run(_ endpoint: String, request: Request, context: BrokerRequestContext, waitSeconds: Double?) async throws -> Response {
        let json = try await request.jsonBody(limit: configuration.maxBodyBytes)
        let run = try RunPodRunRequest(json: json)
        let submitted = try await submitter.submit(run.submitRequest(endpoint: endpoint), body: json, request: request, context: context)
        let headers: HTTPFields = submitted.replayed ? [.idempotentReplayed: "true"] : [:]
        if let waitSeconds {
            try await waitForEnd(endpoint, requestID: submitted.requestID, seconds: waitSeconds, context: context)
        } else if !submitted.replayed {
            return JSONResponse.make(["id": .string(submitted.requestID.uuidString.lowercased()), "status": "IN_QUEUE"] as JSONValue)
        }
        return try await status(endpoint, requestID: submitted.requestID, context: context, headers: headers)
    }

    func runSyncWait(_ request: Request) throws -> Double {
        guard let text = request.uri.queryParameters.get("wait") else { return Self.runSyncWaitSeconds }
        guard let milliseconds = Double(text), milliseconds >= 0 else {
            throw SpoolError.invalidRequest("'wait' must be a number of milliseconds.", code: "invalid_field", param: "wait")
        }
        return min(milliseconds / 1000, Self.runSyncMaxWaitSeconds)
    }

    /// Returns when the job has ended, `seconds` have passed, the client hung up or the broker stops.
    func waitForEnd(_ endpoint: String, requestID: UUID, seconds: Double, context: BrokerRequestContext) async throws {
        let ticket = watchers.register(requestID)
        defer { watchers.unregister(ticket) }
        let watch = await context.connectionWatch()
        watch?.whenGone { ticket.signal.raise() }
        defer { watch?.clearWhenGone() }
        let deadline = ContinuousClock.now + .seconds(seconds)
        // Changes to a watched job are announced by whichever replica makes them.
        try await store.jobs.watch(requestID: requestID, seconds: seconds + 5, on: store.client, logger: context.logger)
        while watch?.isGone != true, !watchers.isClosed {
            guard
                let job = try await store.jobs.find(
                    model: endpoint, requestID: requestID, tenant: context.caller.readableTenant, on: store.client, logger: context.logger),
                !job.status.isTerminal
            else { return }
            let remaining = deadline - .now
            guard remaining > .zero else { return }
            // A lost notification costs at most a few seconds.
            await withGracefulShutdownHandler {
                await ticket.signal.wait(timeout: min(remaining, .seconds(5)))
            } onGracefulShutdown: {
                watchers.close()
            }
        }
    }

    func status(_ endpoint: String, id: String, context: BrokerRequestContext) async throws -> Response {
        try await status(endpoint, requestID: try Self.requestID(id), context: context)
    }

    func status(_ endpoint: String, requestID: UUID, context: BrokerRequestContext, headers: HTTPFields = [:]) async throws -> Response {
        guard let job = try await find(endpoint, requestID, context: context) else { throw Self.notFound(requestID.uuidString.lowercased()) }
        return JSONResponse.make(Self.status(of: job).jsonValue, headers: headers)
    }

    /// A job in RunPod's words. While it runs, its output is its last progress update.
    static func status(of job: JobRecord, now: Date = Date()) -> RunPodJobStatus {
        let status = RunPodStatus(job.status, errorType: job.errorType)
        // A job that never started (cancelled or timed out while queued) waited until it ended.
        let delay = job.status == .pending ? nil : (job.claimedAt ?? job.doneAt).map { $0.timeIntervalSince(job.createdAt) }
        let execution: TimeInterval? =
            switch job.status {
            case .pending: nil
            case .running: job.claimedAt.map { now.timeIntervalSince($0) }
            default: job.claimedAt.flatMap { claimed in job.doneAt.map { $0.timeIntervalSince(claimed) } }
            }
        let output: JSONValue? =
            switch job.status {
            case .running: job.info["progress"]
            case .done: RunPodJobStatus.output(of: job.outputs)
            default: nil
            }
        return RunPodJobStatus(
            id: job.requestID.uuidString.lowercased(), status: status, delayTime: delay.map(Self.milliseconds),
            executionTime: execution.map(Self.milliseconds), output: output,
            error: job.status == .canceled ? nil : job.error, retries: job.retries)
    }

    static func milliseconds(_ seconds: TimeInterval) -> Int64 { Int64((max(seconds, 0) * 1000).rounded()) }

    /// The chunks the job's worker streamed since the last read, each handed out once, with the job's status.
    func stream(_ endpoint: String, id: String, context: BrokerRequestContext) async throws -> Response {
        let requestID = try Self.requestID(id)
        // The status first: a job that ends between the two reads shows its last chunks now, and
        // its final status at the next read, never the final status without them.
        guard let job = try await find(endpoint, requestID, context: context) else { throw Self.notFound(id) }
        let chunks = try await store.streamChunks.takeUnread(jobID: job.id, on: store.client, logger: context.logger)
        let body: JSONValue = [
            "id": .string(requestID.uuidString.lowercased()), "status": .string(RunPodStatus(job.status, errorType: job.errorType).rawValue),
            "stream": .array(chunks.map { ["output": $0] }),
        ]
        return JSONResponse.make(body)
    }

    /// A queued job is cancelled at once; a running one is told to stop through its worker's job-stop
    /// channel and ends CANCELLED. An ended job is left as it is and its status answered.
    func cancel(_ endpoint: String, id: String, context: BrokerRequestContext) async throws -> Response {
        let requestID = try Self.requestID(id)
        let outcome = try await store.jobs.cancel(
            model: endpoint, requestID: requestID, tenant: context.caller.readableTenant, stopRunning: true,
            graceSeconds: configuration.stopGraceSeconds, on: store.client, logger: context.logger)
        switch outcome {
        case .canceled:
            metrics.count("canceled", model: endpoint)
            return JSONResponse.make(["id": .string(requestID.uuidString.lowercased()), "status": "CANCELLED"] as JSONValue)
        case .stopRequested:
            return JSONResponse.make(["id": .string(requestID.uuidString.lowercased()), "status": "CANCELLED"] as JSONValue)
        case .unchanged:
            return try await status(endpoint, requestID: requestID, context: context)
        case .notFound:
            throw Self.notFound(id)
        }
    }

    /// Cancels the endpoint's queued jobs (the caller's tenant's; an admin key's: all), not running ones.
    func purgeQueue(_ endpoint: String, context: BrokerRequestContext) async throws -> Response {
        let removed = try await store.jobs.cancelPending(
            model: endpoint, tenant: context.caller.readableTenant, actor: context.caller.id, on: store.client, logger: context.logger)
        if removed > 0 { metrics.count("canceled", model: endpoint, by: removed) }
        return JSONResponse.make(["removed": .int(Int64(removed)), "status": "completed"] as JSONValue)
    }

    /// Jobs by state (completed, failed and retried over the last hour) and the live workers that
    /// serve the endpoint, busy or idle.
    func health(_ endpoint: String, context: BrokerRequestContext) async throws -> Response {
        let depth = try await store.jobs.depth(model: endpoint, on: store.client, logger: context.logger)
        let recent = try await store.jobs.recentCounts(model: endpoint, on: store.client, logger: context.logger)
        let workers = try await store.workers.list(withinSeconds: WorkersTable.liveSeconds * 2, on: store.client, logger: context.logger)
            .filter { $0.live && $0.models.contains(endpoint) }
        let running = workers.filter { $0.jobsInHand > 0 }.count
        let body: JSONValue = [
            "jobs": [
                "completed": .int(Int64(recent.completed)), "failed": .int(Int64(recent.failed)), "retried": .int(Int64(recent.retried)),
                "inProgress": .int(Int64(depth.running)), "inQueue": .int(Int64(depth.waiting)),
            ],
            "workers": ["idle": .int(Int64(workers.count - running)), "running": .int(Int64(running))],
        ]
        return JSONResponse.make(body)
    }

    func find(_ endpoint: String, _ requestID: UUID, context: BrokerRequestContext) async throws -> JobRecord? {
        try await store.jobs.find(
            model: endpoint, requestID: requestID, tenant: context.caller.readableTenant, on: store.client, logger: context.logger)
    }

    static func requestID(_ text: String) throws -> UUID {
        guard let id = UUID(uuidString: text) else { throw notFound(text) }
        return id
    }

    static func notFound(_ id: String) -> SpoolError {
        .notFound("No request '\(id.prefix(100))' on this endpoint.", code: "request_not_found", param: "id")
    }
}
