import Foundation
import Hummingbird
import Logging
import SpoolCore
import SpoolStore

/// The job list (`GET /v1/jobs`, a caller's own tenant unless it is an admin) and an operator's
/// requeue of a failed job (`POST /v1/queue/requeue`, admin): what the dashboard's Jobs page uses.
struct JobRoutes: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    let metrics: BrokerMetrics

    func register(on clients: some RouterMethods<BrokerRequestContext>, admins: some RouterMethods<BrokerRequestContext>) {
        clients.get("v1/jobs", use: list)
        admins.post("v1/queue/requeue", use: requeue)
    }

    @Sendable func list(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let query = try JobListQuery(request, tenant: context.caller.readableTenant)
        let page = try await store.jobs.list(query.filter, cursor: query.cursor, limit: query.limit, on: store.client, logger: context.logger)
        let rows: [JSONValue] = page.rows.map(Self.view)
        var answer: [String: JSONValue] = ["data": .array(rows), "next_cursor": .null, "scanned": .null]
        if let next = page.nextCursor { answer["next_cursor"] = .string(next.text) }
        if let scanned = page.scanned { answer["scanned"] = .int(Int64(scanned)) }
        return JSONResponse.make(JSONValue.object(answer))
    }

    static func view(_ row: JobListRow) -> JSONValue {
        func time(_ date: Date?) -> JSONValue { date.map { .string(RFC3339.string(from: $0)) } ?? .null }
        var object: [String: JSONValue] = [:]
        object["request_id"] = .string(row.requestID.uuidString.lowercased())
        object["model"] = .string(row.model)
        object["status"] = .string(row.status.rawValue)
        object["priority"] = .int(Int64(row.priority))
        object["retries"] = .int(Int64(row.retries))
        object["created_at"] = time(row.createdAt)
        object["claimed_at"] = time(row.claimedAt)
        object["done_at"] = time(row.doneAt)
        object["error_type"] = row.errorType.map(JSONValue.string) ?? .null
        object["worker_id"] = row.workerID.map(JSONValue.string) ?? .null
        object["progress"] = row.progress.map(JSONValue.double) ?? .null
        return .object(object)
    }

    @Sendable func requeue(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let reference = try JobReference(json: try await request.jsonBody(limit: configuration.maxBodyBytes))
        guard let requestID = UUID(uuidString: reference.requestID) else { throw QueueRoutes.jobNotFound(reference) }
        switch try await store.jobs.requeueFailed(
            model: reference.model, requestID: requestID, tenant: context.caller.readableTenant, actor: context.caller.id,
            on: store.client, logger: context.logger)
        {
        case .requeued:
            metrics.count("requeued", model: reference.model)
            return JSONResponse.make(JSONValue.object(["request_id": .string(requestID.uuidString.lowercased()), "status": "pending"]))
        case .unchanged(let status):
            throw SpoolError.conflict(
                "Only failed jobs can be requeued; this job is \(status.rawValue) and was left unchanged.", code: "job_not_failed",
                param: "request_id", extra: ["status": .string(status.rawValue)])
        case .inBatch:
            throw SpoolError.conflict(
                "This job belongs to a batch, whose output and error files are written once: submit the line again in a new batch.",
                code: "job_in_batch", param: "request_id")
        case .notFound:
            throw QueueRoutes.jobNotFound(reference)
        }
    }
}

/// `GET /v1/jobs`'s query, validated: each filter optional, a bad one a 400 naming it.
struct JobListQuery {
    var filter: JobListFilter
    var cursor: JobListCursor?
    var limit: Int

    static let defaultLimit = 50
    static let names: Set<String> = ["model", "status", "priority", "created_after", "created_before", "request_id", "cursor", "limit"]

    init(_ request: Request, tenant: String?) throws(SpoolError) {
        let parameters = request.uri.queryParameters
        func value(_ name: String) throws(SpoolError) -> String? {
            guard let text = parameters[name[...]].map(String.init), !text.isEmpty else { return nil }
            guard text.utf8.count <= 1024, !text.utf8.contains(0) else {
                throw .invalidRequest("'\(name)' must be at most 1,024 bytes without NUL characters.", code: "invalid_field", param: name)
            }
            return text
        }
        for (name, _) in parameters where !Self.names.contains(String(name)) {
            throw .invalidRequest(
                "Unknown query parameter '\(name)': the job list takes \(Self.names.sorted().joined(separator: ", ")).",
                code: "invalid_field", param: String(name))
        }
        filter = JobListFilter(model: try value("model"), tenant: tenant)
        if let model = filter.model, model.count > 256 {
            throw .invalidRequest("'model' must be 1 to 256 characters.", code: "invalid_field", param: "model")
        }
        if let text = try value("status") {
            guard let status = JobStatus(rawValue: text) else {
                throw .invalidRequest(
                    "'status' must be one of \(JobStatus.allCases.map(\.rawValue).joined(separator: ", ")).", code: "invalid_field", param: "status")
            }
            filter.status = status
        }
        if let text = try value("priority") {
            guard let priority = Int32(text) else {
                throw .invalidRequest("'priority' must be a 32-bit integer.", code: "invalid_field", param: "priority")
            }
            filter.priority = priority
        }
        for name in ["created_after", "created_before"] {
            guard let text = try value(name) else { continue }
            guard let date = RFC3339.date(from: text) else {
                throw .invalidRequest("'\(name)' must be an RFC 3339 time, such as 2026-12-01T10:00:00Z.", code: "invalid_field", param: name)
            }
            if name == "created_after" { filter.createdAfter = date } else { filter.createdBefore = date }
        }
        if let text = try value("request_id") {
            let digits = text.lowercased().filter { $0 != "-" }
            guard (1...32).contains(digits.count), digits.allSatisfy(\.isHexDigit) else {
                throw .invalidRequest(
                    "'request_id' must be the start of a request id: 1 to 32 hexadecimal digits (dashes are ignored).", code: "invalid_field",
                    param: "request_id")
            }
            filter.requestIDPrefix = digits
        }
        if let text = try value("cursor") {
            guard let cursor = JobListCursor(text: text) else {
                throw .invalidRequest("'cursor' must be a next_cursor this list returned.", code: "invalid_field", param: "cursor")
            }
            // A cursor of the other order (a prefix search's in a newest-first list) would silently skip rows.
            switch (cursor, filter.requestIDPrefix) {
            case (.beforeID, nil), (.afterRequestID, .some): self.cursor = cursor
            default: throw .invalidRequest("'cursor' belongs to a list with other filters.", code: "invalid_field", param: "cursor")
            }
        } else {
            cursor = nil
        }
        limit = Self.defaultLimit
        if let text = try value("limit") {
            guard let limit = Int(text), (1...JobsTable.maxListLimit).contains(limit) else {
                throw .invalidRequest("'limit' must be an integer from 1 to \(JobsTable.maxListLimit).", code: "invalid_field", param: "limit")
            }
            self.limit = limit
        }
    }
}
