import Foundation
import Hummingbird
import Logging
import SpoolCore
import SpoolStore

/// Together's batch API: `POST /v1/batches`, `GET /v1/batches/{id}`, `GET /v1/batches`,
/// `POST /v1/batches/{id}/cancel`. The work itself is done by ``BatchRunner``.
struct BatchRoutes: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    let quotas: TenantQuotas
    /// Raised when a batch is created, so a runner validates it at once.
    let wakeup: Signal

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        let batches = router.group("v1/batches")
        batches.post(use: create)
        batches.get(use: list)
        batches.get(":id", use: retrieve)
        batches.post(":id/cancel", use: cancel)
    }

    @Sendable func create(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let body = try BatchCreateRequest(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
        guard
            let file = try await store.files.find(
                id: body.inputFileID, tenant: context.caller.readableTenant, on: store.client, logger: context.logger)
        else {
            throw SpoolError.notFound(
                "No file '\(body.inputFileID)': upload the input with purpose 'batch-api' first.", code: "file_not_found", param: "input_file_id")
        }
        guard file.isReady else {
            throw SpoolError.conflict(
                "File '\(file.id)' has no content yet: finish its upload first.", code: "file_not_ready", param: "input_file_id")
        }
        guard file.fileType == "jsonl" else {
            throw SpoolError.invalidRequest(
                "A batch's input must be a JSONL file; '\(file.id)' is \(file.fileType).", code: "invalid_field", param: "input_file_id")
        }
        // A batch is one submit to the tenant's rate; its lines count toward fair share and running limits.
        try await quotas.admitSubmit(tenant: context.caller.ownTenant, logger: context.logger)
        let record = try await store.batches.create(
            id: UUID(), endpoint: body.endpoint.rawValue, inputFileID: file.id, modelID: body.modelID, priority: body.priority,
            completionWindow: body.completionWindow, windowSeconds: body.windowSeconds, fileSizeBytes: file.bytes,
            owner: context.caller.id, tenant: context.caller.ownTenant, on: store.client, logger: context.logger)
        wakeup.raise()
        var answer: [String: JSONValue] = ["job": Self.view(record)]
        if file.purpose != "batch-api" && file.purpose != "batch" {
            answer["warning"] = .string("The input file's purpose is '\(file.purpose)', not 'batch-api'.")
        }
        return JSONResponse.make(JSONValue.object(answer), status: .created)
    }

    @Sendable func retrieve(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let id = try Self.batchID(context)
        guard let record = try await store.batches.find(id: id, tenant: context.caller.readableTenant, on: store.client, logger: context.logger)
        else { throw Self.notFound(id) }
        return JSONResponse.make(Self.view(record))
    }

    @Sendable func list(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let records = try await store.batches.list(
            limit: try FileRoutes.limit(request), tenant: context.caller.readableTenant, on: store.client, logger: context.logger)
        return JSONResponse.make(JSONValue.array(records.map(Self.view)))
    }

    /// Pending lines are canceled now, running ones are asked to stop; CANCELLING until they end, then CANCELLED.
    @Sendable func cancel(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let id = try Self.batchID(context)
        switch try await store.batches.cancel(
            id: id, tenant: context.caller.readableTenant, graceSeconds: configuration.stopGraceSeconds, on: store.client, logger: context.logger)
        {
        case .canceling(let record):
            wakeup.raise()
            return JSONResponse.make(Self.view(record))
        case .alreadyEnded(let status):
            throw SpoolError.conflict(
                "Batch '\(id.uuidString.lowercased())' has already ended (\(status.rawValue)); nothing was canceled.", code: "batch_ended",
                param: "id", extra: ["status": .string(status.rawValue)])
        case .notFound:
            throw Self.notFound(id)
        }
    }

    /// A batch in Together's `BatchJob` shape, with `request_counts` as an extension.
    static func view(_ record: BatchRecord) -> JSONValue {
        let total = Int64(record.totalLines ?? 0)
        let progress: Double =
            record.status == .completed ? 100 : total > 0 ? (Double(record.finishedLines) * 100 / Double(total) * 100).rounded() / 100 : 0
        return [
            "id": .string(record.id.uuidString.lowercased()), "object": "batch", "status": .string(record.status.rawValue),
            "endpoint": .string(record.endpoint), "input_file_id": .string(record.inputFileID),
            "output_file_id": record.outputFileID.map(JSONValue.string) ?? .null,
            "error_file_id": record.errorFileID.map(JSONValue.string) ?? .null,
            "model_id": record.modelID.map(JSONValue.string) ?? .null, "priority": .int(Int64(record.priority)),
            "completion_window": .string(record.completionWindow), "progress": .double(progress),
            "created_at": .string(RFC3339.string(from: record.createdAt)), "job_deadline": .string(RFC3339.string(from: record.jobDeadline)),
            "completed_at": record.completedAt.map { .string(RFC3339.string(from: $0)) } ?? .null,
            "error": record.error.map(JSONValue.string) ?? .null, "file_size_bytes": .int(record.fileSizeBytes),
            "user_id": record.owner.map(JSONValue.string) ?? .null,
            "request_counts": [
                "total": .int(total), "completed": .int(Int64(record.finishedLines - record.failedLines)),
                "failed": .int(Int64(record.failedLines)),
            ],
        ]
    }

    static func batchID(_ context: BrokerRequestContext) throws(SpoolError) -> UUID {
        guard let text = context.parameters.get("id"), let id = UUID(uuidString: text) else {
            throw .notFound("No such batch: batch ids are UUIDs.", code: "batch_not_found", param: "id")
        }
        return id
    }

    static func notFound(_ id: UUID) -> SpoolError {
        .notFound("No batch '\(id.uuidString.lowercased())' on this broker.", code: "batch_not_found", param: "id")
    }
}
