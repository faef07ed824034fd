import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SpoolCore
import SpoolStore

/// Together's Queue API: `/v1/queue/submit`, `status` (and its live stream), `cancel`, `clear`, `metrics`.
struct QueueRoutes: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    let submitter: Submitter
    let views: JobViews
    let stream: StatusStream
    let metrics: BrokerMetrics

    var longPoll: StatusLongPoll { StatusLongPoll(store: store, watchers: stream.watchers, views: views) }

    /// The client routes on `clients`; clearing a queue (every tenant's jobs) on `admins`.
    func register(on clients: some RouterMethods<BrokerRequestContext>, admins: some RouterMethods<BrokerRequestContext>) {
        let queue = clients.group("v1/queue")
        queue.post("submit", use: submit)
        queue.get("status", use: status)
        queue.get("status/stream", use: statusStream)
        queue.post("cancel", use: cancel)
        queue.get("metrics", use: metrics)
        admins.post("v1/queue/clear", use: clear)
    }

    /// One job (Together's body), or an array of up to 1,000 (an extension): those are stored in
    /// one statement, all or none, and answered with their ids in order.
    @Sendable func submit(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let json = try await request.jsonBody(limit: configuration.maxBodyBytes)
        if case .array(let items) = json {
            guard request.headers[.idempotencyKey] == nil else {
                throw SpoolError.invalidRequest(
                    "A bulk submit takes an 'idempotency_key' in each job, not the Idempotency-Key header.",
                    code: "invalid_idempotency_key", param: "Idempotency-Key")
            }
            let submitted = try await submitter.submitMany(try BulkSubmitItem.parse(items), context: context)
            return try JSONResponse.make(
                encoding:
                    BulkSubmitResponse(data: submitted.map { .init(requestId: $0.requestID.uuidString.lowercased(), replayed: $0.replayed) }))
        }
        let submitted = try await submitter.submit(SubmitRequest(json: json), body: json, request: request, context: context)
        return JSONResponse.make(
            SubmitResponse(requestId: submitted.requestID.uuidString.lowercased()),
            headers: submitted.replayed ? [.idempotentReplayed: "true"] : [:])
    }

    /// The job's status; `logs=1` adds its log lines (extensions: an ETag with `If-None-Match`
    /// answered 304, and `wait=N` to wait up to N seconds for a change).
    @Sendable func status(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let query = try request.queryJSON()
        let reference = try JobReference(json: query)
        let wait = try StatusLongPoll.waitSeconds(request)
        guard let requestID = UUID(uuidString: reference.requestID),
            let response = try await longPoll.respond(
                to: request, model: reference.model, requestID: requestID, withLogs: request.wantsLogs, caller: context.caller, wait: wait,
                logger: context.logger)
        else {
            throw Self.jobNotFound(reference)
        }
        return response
    }

    /// The job's status as Server-Sent Events until it is done, failed or canceled (an extension).
    @Sendable func statusStream(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let reference = try JobReference(json: try request.queryJSON())
        let withLogs = request.wantsLogs
        guard let requestID = UUID(uuidString: reference.requestID),
            try await store.jobs.find(
                model: reference.model, requestID: requestID, tenant: context.caller.readableTenant, on: store.client, logger: context.logger) != nil
        else {
            throw Self.jobNotFound(reference)
        }
        let logger = context.logger
        let caller = context.caller
        return stream.response(requestID: requestID, logger: logger) {
            guard let view = try await views.load(model: reference.model, requestID: requestID, withLogs: withLogs, caller: caller, logger: logger)
            else { return nil }
            let status = JobViews.together(view)
            return StatusStream.Frame(
                event: status.jsonValue, isFinal: view.record.status.isTerminal,
                isQueued: view.record.status == .pending)
        }
    }

    /// Cancels a pending job. `cancel_running: true` (an extension) asks a running job to stop
    /// instead of refusing; without it, Together's behaviour: a 409 naming the job's status.
    @Sendable func cancel(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let cancel = try CancelRequest(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
        let reference = cancel.job
        guard let requestID = UUID(uuidString: reference.requestID) else { throw Self.jobNotFound(reference) }
        switch try await store.jobs.cancel(
            model: reference.model, requestID: requestID, tenant: context.caller.readableTenant, stopRunning: cancel.cancelRunning,
            graceSeconds: configuration.stopGraceSeconds,
            // An admin key's cancel reaches any tenant's job: an operator's action, recorded.
            auditActor: context.caller.scopes.contains(.admin) ? context.caller.id : nil, on: store.client, logger: context.logger)
        {
        case .canceled:
            metrics.count("canceled", model: reference.model)
            return try JSONResponse.make(encoding: CancelResponse(status: .canceled))
        case .unchanged(.canceled):
            return try JSONResponse.make(encoding: CancelResponse(status: .canceled))
        case .stopRequested:
            return try JSONResponse.make(encoding: CancelResponse(status: .running, cancel_requested: true), status: .accepted)
        case .unchanged(let status):
            throw SpoolError.conflict(
                "Only pending jobs can be canceled; this job is \(status.rawValue) and was left unchanged."
                    + (status == .running ? " Send \"cancel_running\": true to ask its worker to stop." : ""),
                code: "job_not_pending", param: "request_id", extra: ["status": .string(status.rawValue)])
        case .notFound:
            throw Self.jobNotFound(reference)
        }
    }

    @Sendable func clear(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let model = try ModelReference(json: try await request.jsonBody(limit: configuration.maxBodyBytes)).model
        let count = try await store.jobs.cancelPending(model: model, actor: context.caller.id, on: store.client, logger: context.logger)
        metrics.count("canceled", model: model, by: count)
        return try JSONResponse.make(encoding: ClearResponse(canceled_count: count))
    }

    @Sendable func metrics(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let model = try ModelReference(json: try request.queryJSON()).model
        let depth = try await store.jobs.depth(model: model, on: store.client, logger: context.logger)
        return try JSONResponse.make(encoding: QueueMetricsResponse(messages_waiting: depth.waiting, messages_running: depth.running))
    }

    static func jobNotFound(_ reference: JobReference) -> SpoolError {
        .notFound("No job '\(reference.requestID)' for model '\(reference.model)'.", code: "job_not_found", param: "request_id")
    }
}
