import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
@_exported import SpoolCore

/// A client of a Spool broker: Together's Queue API, its streams, and the operations endpoints.
///
/// ```swift
/// let client = BrokerClient(baseURL: "http://127.0.0.1:8080", apiKey: key)
/// let id = try await client.submit(SubmitRequest(model: "demo/reverse", payload: ["prompt": "hi"]))
/// for try await status in client.watch(model: "demo/reverse", requestID: id) { print(status.status) }
/// try await client.shutdown()
/// ```
public final class BrokerClient: Sendable {
    public let baseURL: String
    let apiKey: String?
    let http: HTTPClient

    /// `caFile` adds certificate authorities to trust for an https broker.
    public init(baseURL: String, apiKey: String?, caFile: String? = nil) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.apiKey = apiKey
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(10)
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        // A refused connection is an answer: report it at once instead of retrying until the timeout.
        configuration.connectionPool.retryConnectionEstablishment = false
        if let caFile {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.additionalTrustRoots = [.file(caFile)]
            configuration.tlsConfiguration = tls
        }
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    public func shutdown() async throws { try await http.shutdown() }

    /// Submits a job; returns its request id.
    public func submit(_ job: SubmitRequest, idempotencyKey: String? = nil) async throws -> String {
        var body: [String: JSONValue] = ["model": .string(job.model), "payload": .object(job.payload), "priority": .int(Int64(job.priority))]
        if !job.info.isEmpty { body["info"] = .object(job.info) }
        if let url = job.webhookURL { body["webhook_url"] = .string(url) }
        let answer: SubmitResponse = try await send(
            .POST, "/v1/queue/submit", body: .object(body), headers: idempotencyKey.map { [("Idempotency-Key", $0)] } ?? [])
        return answer.requestId
    }

    /// Submits up to 1,000 jobs in one request, stored all or none; their ids in order. A job's
    /// idempotency key (same position in `idempotencyKeys`) makes a retry of it return the first job.
    public func submitMany(_ jobs: [SubmitRequest], idempotencyKeys: [String?]? = nil) async throws -> [String] {
        let items: [JSONValue] = jobs.enumerated().map { index, job in
            var body: [String: JSONValue] = ["model": .string(job.model), "payload": .object(job.payload), "priority": .int(Int64(job.priority))]
            if !job.info.isEmpty { body["info"] = .object(job.info) }
            if let url = job.webhookURL { body["webhook_url"] = .string(url) }
            if let key = idempotencyKeys?[index] { body["idempotency_key"] = .string(key) }
            return .object(body)
        }
        let answer: BulkSubmitResponse = try await send(.POST, "/v1/queue/submit", body: .array(items))
        return answer.data.map(\.requestId)
    }

    public func status(model: String, requestID: String, logs: Bool = false) async throws -> JobStatusResponse {
        try await send(.GET, "/v1/queue/status?\(Self.query(model: model, requestID: requestID, logs: logs))")
    }

    /// The job's status at every change, until it is done, failed or canceled (Server-Sent Events).
    public func watch(model: String, requestID: String, logs: Bool = false) -> AsyncThrowingStream<JobStatusResponse, any Error> {
        let path = "/v1/queue/status/stream?\(Self.query(model: model, requestID: requestID, logs: logs))"
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let response = try await http.execute(request(.GET, path, body: nil, headers: []), timeout: .hours(24))
                    guard response.status == .ok else {
                        throw Self.error(status: Int(response.status.code), body: try await response.body.collect(upTo: 1 << 20))
                    }
                    var pending = ""
                    for try await chunk in response.body {
                        pending += String(buffer: chunk)
                        while let end = pending.range(of: "\n\n") {
                            let event = pending[..<end.lowerBound]
                            pending = String(pending[end.upperBound...])
                            guard event.hasPrefix("data: ") else { continue }  // a keep-alive comment
                            continuation.yield(try JSONDecoder().decode(JobStatusResponse.self, from: Data(event.dropFirst(6).utf8)))
                        }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Cancels a pending job; with `running`, asks a running one to stop.
    public func cancel(model: String, requestID: String, running: Bool = false) async throws -> CancelResponse {
        try await send(
            .POST, "/v1/queue/cancel",
            body: ["model": .string(model), "request_id": .string(requestID), "cancel_running": .bool(running)])
    }

    /// Cancels a model's pending jobs; returns how many.
    public func clear(model: String) async throws -> Int {
        let answer: ClearResponse = try await send(.POST, "/v1/queue/clear", body: ["model": .string(model)])
        return answer.canceled_count
    }

    /// A page of `GET /v1/jobs`: `filters` are its query parameters (model, status, priority,
    /// created_after, created_before, request_id, cursor, limit); answers its rows and next cursor.
    public func jobs(_ filters: [(String, String)]) async throws -> (rows: [JSONValue], nextCursor: String?) {
        let query = filters.map { "\($0.0)=\(Self.encode($0.1))" }.joined(separator: "&")
        let answer: JSONValue = try await send(.GET, "/v1/jobs" + (query.isEmpty ? "" : "?" + query))
        return (answer.objectValue?["data"]?.arrayValue ?? [], answer.objectValue?["next_cursor"]?.stringValue)
    }

    /// Sends a failed job back to the queue for a new attempt (an admin key).
    public func requeue(model: String, requestID: String) async throws -> JSONValue {
        try await send(.POST, "/v1/queue/requeue", body: ["model": .string(model), "request_id": .string(requestID)])
    }

    public func metrics(model: String) async throws -> QueueMetricsResponse {
        try await send(.GET, "/v1/queue/metrics?model=\(Self.encode(model))")
    }

    /// Every model's queue depth and live workers.
    public func models() async throws -> [ModelSummary] {
        let answer: ModelsResponse = try await send(.GET, "/v1/models")
        return answer.models
    }

    /// The workers brokers have seen in the last day.
    public func workers() async throws -> [WorkerSummary] {
        let answer: WorkersResponse = try await send(.GET, "/v1/workers")
        return answer.workers
    }

    /// Creates an API key (admin scope); the answer holds the key, once, in `key`.
    public func createKey(_ request: CreateKeyRequest) async throws -> JSONValue {
        var body: [String: JSONValue] = ["name": .string(request.name), "scopes": .array(request.scopes.sorted().map { .string($0.rawValue) })]
        if let tenant = request.tenant { body["tenant"] = .string(tenant) }
        if let models = request.models { body["models"] = .array(models.map(JSONValue.string)) }
        if let expiresAt = request.expiresAt { body["expires_at"] = .string(RFC3339.string(from: expiresAt)) }
        return try await send(.POST, "/v1/admin/keys", body: .object(body))
    }

    /// Live API keys, without the keys themselves (admin scope).
    public func keys() async throws -> [JSONValue] {
        let answer: JSONValue = try await send(.GET, "/v1/admin/keys")
        return answer.objectValue?["data"]?.arrayValue ?? []
    }

    /// Revokes a key by id (admin scope): every replica refuses it within a second.
    public func revokeKey(id: String) async throws {
        let _: JSONValue = try await send(.DELETE, "/v1/admin/keys/\(Self.encode(id))")
    }

    /// The audit trail, newest first (admin scope).
    public func audit(limit: Int = 100) async throws -> [JSONValue] {
        let answer: JSONValue = try await send(.GET, "/v1/admin/audit?limit=\(limit)")
        return answer.objectValue?["data"]?.arrayValue ?? []
    }

    func send<Answer: Decodable>(
        _ method: HTTPMethod, _ path: String, body: JSONValue? = nil, headers: [(String, String)] = []
    ) async throws -> Answer {
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request(method, path, body: body, headers: headers), timeout: .seconds(60))
            bytes = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw SpoolClientError(status: nil, code: "unreachable", message: "Cannot reach the broker at \(baseURL): \(error)")
        }
        guard (200..<300).contains(response.status.code) else { throw Self.error(status: Int(response.status.code), body: bytes) }
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(bytes.readableBytesView))
        } catch {
            throw SpoolClientError(
                status: Int(response.status.code), code: "unreadable_answer", message: "The broker's answer is not what was expected: \(error)")
        }
    }

    func request(_ method: HTTPMethod, _ path: String, body: JSONValue?, headers: [(String, String)]) -> HTTPClientRequest {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(string: body.jsonText))
        }
        return request
    }

    static func error(status: Int, body: ByteBuffer) -> SpoolClientError {
        let json = try? JSONValue.parse(body.readableBytesView)
        return SpoolClientError(
            status: status, code: json?.objectValue?["code"]?.stringValue ?? "http_\(status)",
            message: json?.objectValue?["message"]?.stringValue ?? String(buffer: body).prefix(500).description)
    }

    static func query(model: String, requestID: String, logs: Bool) -> String {
        "model=\(encode(model))&request_id=\(encode(requestID))" + (logs ? "&logs=1" : "")
    }

    static func encode(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
    }
}

/// A request the broker refused (`status` set) or could not be sent (`status` nil).
public struct SpoolClientError: Error, Sendable, CustomStringConvertible {
    /// The HTTP status, or nil when the broker could not be reached.
    public var status: Int?
    /// The broker's error code, such as `job_not_found`.
    public var code: String
    public var message: String

    public var description: String { status.map { "\($0) \(code): \(message)" } ?? message }
}
