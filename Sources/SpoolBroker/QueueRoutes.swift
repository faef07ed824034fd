import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import SpoolCore
import SpoolStore

/// Together's Queue API: `/v1/queue/submit`, `status`, `cancel`, `clear`, `metrics`.
struct QueueRoutes: Sendable {
    let store: SpoolStore
    let configuration: BrokerConfiguration

    /// Longest `Idempotency-Key` accepted; Stripe and the IETF draft use similar limits.
    static let maxIdempotencyKeyLength = 255

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        let queue = router.group("v1/queue")
        queue.post("submit", use: submit)
        queue.get("status", use: status)
        queue.post("cancel", use: cancel)
        queue.post("clear", use: clear)
        queue.get("metrics", use: metrics)
    }

    @Sendable func submit(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let json = try await request.jsonBody(limit: configuration.maxBodyBytes)
        let submit = try SubmitRequest(json: json)
        var idempotency: (key: String, requestHash: String, windowSeconds: Int)?
        if let key = request.headers[.idempotencyKey] {
            guard !key.isEmpty, key.count <= Self.maxIdempotencyKeyLength else {
                throw SpoolError.invalidRequest(
                    "The Idempotency-Key header must be 1 to \(Self.maxIdempotencyKeyLength) characters.",
                    code: "invalid_idempotency_key", param: "Idempotency-Key")
            }
            // Hash the parsed body in canonical form: a retry that reorders keys is still the same request.
            let hash = SHA256.hash(data: Data(json.jsonText.utf8)).map { String(format: "%02x", $0) }.joined()
            idempotency = (key, hash, configuration.idempotencyWindowSeconds)
        }
        switch try await store.submit(submit, submittedBy: context.caller.id, idempotency: idempotency, logger: context.logger) {
        case .created(let requestID):
            return JSONResponse.make(SubmitResponse(requestId: requestID.uuidString.lowercased()))
        case .replayed(let requestID):
            return JSONResponse.make(
                SubmitResponse(requestId: requestID.uuidString.lowercased()),
                headers: [.idempotentReplayed: "true"])
        case .idempotencyKeyReused:
            throw SpoolError.conflict(
                "This Idempotency-Key was already used for a different request within the last \(configuration.idempotencyWindowSeconds / 3600) hours; use a new key for a new request.",
                code: "idempotency_key_reused", param: "Idempotency-Key")
        }
    }

    @Sendable func status(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let reference = try JobReference(json: try request.queryJSON())
        guard let requestID = UUID(uuidString: reference.requestID),
            let job = try await store.jobs.find(model: reference.model, requestID: requestID, on: store.client, logger: context.logger)
        else {
            throw Self.jobNotFound(reference)
        }
        return JSONResponse.make(
            JobStatusResponse(
                model: job.model, request_id: job.requestID.uuidString.lowercased(), status: job.status, priority: job.priority,
                info: job.info, inputs: job.payload, outputs: job.outputs, error: job.error, retries: job.retries,
                created_at: job.createdAt, claimed_at: job.claimedAt, done_at: job.doneAt))
    }

    @Sendable func cancel(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let reference = try JobReference(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
        guard let requestID = UUID(uuidString: reference.requestID) else { throw Self.jobNotFound(reference) }
        switch try await store.jobs.cancel(model: reference.model, requestID: requestID, on: store.client, logger: context.logger) {
        case .canceled, .unchanged(.canceled):
            return JSONResponse.make(CancelResponse(status: .canceled))
        case .unchanged(let status):
            throw SpoolError.conflict(
                "Only pending jobs can be canceled; this job is \(status.rawValue) and was left unchanged.",
                code: "job_not_pending", param: "request_id", extra: ["status": .string(status.rawValue)])
        case .notFound:
            throw Self.jobNotFound(reference)
        }
    }

    @Sendable func clear(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let model = try ModelReference(json: try await request.jsonBody(limit: configuration.maxBodyBytes)).model
        let count = try await store.jobs.cancelPending(model: model, on: store.client, logger: context.logger)
        return JSONResponse.make(ClearResponse(canceled_count: count))
    }

    @Sendable func metrics(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let model = try ModelReference(json: try request.queryJSON()).model
        let depth = try await store.jobs.depth(model: model, on: store.client, logger: context.logger)
        return JSONResponse.make(QueueMetricsResponse(messages_waiting: depth.waiting, messages_running: depth.running))
    }

    static func jobNotFound(_ reference: JobReference) -> SpoolError {
        .notFound("No job '\(reference.requestID)' for model '\(reference.model)'.", code: "job_not_found", param: "request_id")
    }
}
