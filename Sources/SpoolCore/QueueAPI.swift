import Foundation

// Request and response shapes of Together's Queue API (`together` 3.1.1, `client.beta.jig.queue`).
// Requests are validated by hand from a parsed JSONValue, so every refusal names the field at fault.

/// `POST /v1/queue/submit`.
public struct SubmitRequest: Sendable, Equatable {
    public var model: String
    public var payload: [String: JSONValue]
    public var info: [String: JSONValue]
    public var priority: Int32
    /// The endpoint within the app (fal's `/{owner}/{app}/{path}`); nil for the app itself.
    public var path: String?
    /// Seconds the job may wait to start before it fails instead (fal's `X-Fal-Request-Timeout`).
    public var startTimeoutSeconds: Double?
    /// Where the job's terminal state is delivered (`webhook_url`, or fal's `fal_webhook`).
    public var webhookURL: String?
    /// The body the webhook gets: Spool's Standard Webhooks event, or fal's webhook body.
    public var webhookFormat: WebhookFormat
    /// The job's own maximum run time (RunPod's `policy.executionTimeout`), within the broker's.
    public var maxRunSeconds: Double? = nil

    public init(
        model: String, payload: [String: JSONValue], info: [String: JSONValue] = [:], priority: Int32 = 0, path: String? = nil,
        startTimeoutSeconds: Double? = nil, webhookURL: String? = nil, webhookFormat: WebhookFormat = .spool
    ) {
        self.model = model
        self.payload = payload
        self.info = info
        self.priority = priority
        self.path = path
        self.startTimeoutSeconds = startTimeoutSeconds
        self.webhookURL = webhookURL
        self.webhookFormat = webhookFormat
    }

    /// Validates a parsed body; throws a 400 naming the field at fault.
    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        self.model = try body.model()
        self.payload = try body.requiredObject("payload")
        self.info = try body.optionalObject("info") ?? [:]
        self.priority = try body.optionalInt32("priority") ?? 0
        self.webhookURL = try body.optionalString("webhook_url", maxLength: 2048)
        self.webhookFormat = .spool
    }
}

/// One job of a bulk submit (`POST /v1/queue/submit` with a JSON array): a submit request and
/// its own optional `idempotency_key`.
public struct BulkSubmitItem: Sendable, Equatable {
    /// Most jobs one bulk submit takes: one statement, and an answer a client reads at once.
    public static let maxJobs = 1000

    public var request: SubmitRequest
    public var idempotencyKey: String?
    /// The item as sent, without `idempotency_key`: what the key's request hash covers, as a
    /// single submit's body would be.
    public var body: JSONValue

    /// Validates the items of an array body; an error names the job at fault (`[index].field`).
    public static func parse(_ items: [JSONValue]) throws(SpoolError) -> [BulkSubmitItem] {
        guard !items.isEmpty else {
            throw .invalidRequest("The array of jobs is empty; send 1 to \(maxJobs) jobs.", code: "invalid_body")
        }
        guard items.count <= maxJobs else {
            throw .invalidRequest(
                "A bulk submit takes at most \(maxJobs) jobs; this one has \(items.count). Split it into several requests.",
                code: "too_many_jobs")
        }
        var parsed: [BulkSubmitItem] = []
        parsed.reserveCapacity(items.count)
        var keys: [String: Int] = [:]
        for (index, item) in items.enumerated() {
            do throws(SpoolError) {
                var body = try RequestFields(item).members
                let key = try RequestFields(item).optionalString("idempotency_key", maxLength: 255)
                body["idempotency_key"] = nil
                let request = try SubmitRequest(json: .object(body))
                if let key {
                    if let first = keys.updateValue(index, forKey: key) {
                        throw .invalidRequest(
                            "'idempotency_key' repeats that of job \(first); each job's key must be its own.", code: "duplicate_idempotency_key",
                            param: "idempotency_key")
                    }
                }
                parsed.append(BulkSubmitItem(request: request, idempotencyKey: key, body: .object(body)))
            } catch {
                throw error.atJob(index)
            }
        }
        return parsed
    }
}

/// The answer to a bulk submit: one entry per job, in the order sent.
public struct BulkSubmitResponse: Sendable, Codable, Equatable {
    public struct Job: Sendable, Codable, Equatable {
        public var requestId: String
        /// True when the job's `idempotency_key` named a job submitted before: that job's id.
        public var replayed: Bool
        public init(requestId: String, replayed: Bool) {
            self.requestId = requestId
            self.replayed = replayed
        }
    }

    public var object = "list"
    public var data: [Job]
    public init(data: [Job]) { self.data = data }
}

/// The body a job's webhook receives.
public enum WebhookFormat: String, Sendable, Codable {
    /// `{"type": "job.<status>", "timestamp", "data": {request_id, model, status, outputs, error, …}}`.
    case spool
    /// fal's: `{"request_id", "status": "OK" | "ERROR", "payload", "error"}`.
    case fal
    /// RunPod's: the job's status as `/v2/{endpoint_id}/status/{id}` answers it.
    case runpod
}

/// The answer to a submit: `{"requestId": …}`.
public struct SubmitResponse: Sendable, Codable, Equatable {
    public var requestId: String
    public init(requestId: String) { self.requestId = requestId }
}

/// `POST /v1/queue/cancel`: `{model, request_id}`.
public struct JobReference: Sendable, Equatable {
    public var model: String
    public var requestID: String

    /// Validates a parsed body (cancel) or query (status).
    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        self.model = try body.model()
        self.requestID = try body.requiredString("request_id")
    }
}

/// `POST /v1/queue/cancel`: `{model, request_id, cancel_running?}`.
public struct CancelRequest: Sendable, Equatable {
    public var job: JobReference
    /// An extension: ask a running job to stop instead of refusing (Together cancels pending jobs only).
    public var cancelRunning: Bool

    public init(json: JSONValue) throws(SpoolError) {
        job = try JobReference(json: json)
        cancelRunning = try RequestFields(json).optionalBool("cancel_running") ?? false
    }
}

/// `POST /v1/queue/clear`: `{model}`; also the metrics query.
public struct ModelReference: Sendable, Equatable {
    public var model: String

    public init(model: String) { self.model = model }

    public init(json: JSONValue) throws(SpoolError) {
        self.model = try RequestFields(json).model()
    }
}

/// `GET /v1/queue/status`: a job as clients see it.
///
/// Together's fields, plus extensions: `error` and `error_type` (why a failed job failed),
/// `queue_position` and `estimated_wait_seconds` (while pending), and `logs` when asked for.
public struct JobStatusResponse: Sendable, Codable, Equatable {
    public var model: String
    public var request_id: String
    public var status: JobStatus
    public var priority: Int32
    public var info: [String: JSONValue]
    public var inputs: [String: JSONValue]
    public var outputs: [String: JSONValue]?
    public var error: String?
    public var error_type: String?
    public var retries: Int32
    public var created_at: String
    public var claimed_at: String?
    public var done_at: String?
    public var warnings: [String]
    /// Pending jobs a claim takes before this one (0: next); nil unless pending.
    public var queue_position: Int?
    /// Seconds until it should start, from the model's recent throughput; nil when unknown.
    public var estimated_wait_seconds: Double?
    /// The job's log lines, oldest first, when the request asked for them (`logs=1`).
    public var logs: [JobLogLine]?
    /// The delivery of the job's webhook, if it named one.
    public var webhook: WebhookStatus?

    public init(
        model: String, request_id: String, status: JobStatus, priority: Int32, info: [String: JSONValue],
        inputs: [String: JSONValue], outputs: [String: JSONValue]?, error: String?, error_type: String? = nil, retries: Int32,
        created_at: Date, claimed_at: Date?, done_at: Date?, warnings: [String] = [], queue_position: Int? = nil,
        estimated_wait_seconds: Double? = nil, logs: [JobLogLine]? = nil, webhook: WebhookStatus? = nil
    ) {
        self.webhook = webhook
        self.model = model
        self.request_id = request_id
        self.status = status
        self.priority = priority
        self.info = info
        self.inputs = inputs
        self.outputs = outputs
        self.error = error
        self.error_type = error_type
        self.retries = retries
        self.created_at = RFC3339.string(from: created_at)
        self.claimed_at = claimed_at.map(RFC3339.string(from:))
        self.done_at = done_at.map(RFC3339.string(from:))
        self.warnings = warnings
        self.queue_position = queue_position
        self.estimated_wait_seconds = estimated_wait_seconds
        self.logs = logs
    }

    /// The one encoding is ``jsonValue`` (every field present, optional ones as null); Codable writes it too.
    public func encode(to encoder: any Encoder) throws { try jsonValue.encode(to: encoder) }
}

/// Where a job's webhook delivery stands (an extension of the status answer).
public struct WebhookStatus: Sendable, Codable, Equatable {
    /// The `webhook-id` every attempt carries; null until the job ends.
    public var webhook_id: String?
    public var url: String
    /// waiting (the job has not ended), pending (attempts under way or due), delivered, failed (given up), gone (410).
    public var state: String
    public var attempts: Int32
    public var last_status_code: Int32?
    public var last_error: String?
    public var last_attempt_at: String?
    public var next_attempt_at: String?

    public init(
        webhook_id: String?, url: String, state: String, attempts: Int32 = 0, last_status_code: Int32? = nil, last_error: String? = nil,
        last_attempt_at: Date? = nil, next_attempt_at: Date? = nil
    ) {
        self.webhook_id = webhook_id
        self.url = url
        self.state = state
        self.attempts = attempts
        self.last_status_code = last_status_code
        self.last_error = last_error
        self.last_attempt_at = last_attempt_at.map(RFC3339.string(from:))
        self.next_attempt_at = next_attempt_at.map(RFC3339.string(from:))
    }

    public func encode(to encoder: any Encoder) throws { try jsonValue.encode(to: encoder) }
}

/// The answer to a cancel: the job's status after the attempt.
public struct CancelResponse: Sendable, Codable, Equatable {
    public var status: JobStatus
    /// Set when a running job was asked to stop (`cancel_running`); it ends `canceled` when its worker stops.
    public var cancel_requested: Bool?
    public init(status: JobStatus, cancel_requested: Bool? = nil) {
        self.status = status
        self.cancel_requested = cancel_requested
    }
}

/// The answer to a clear.
public struct ClearResponse: Sendable, Codable, Equatable {
    public var canceled_count: Int
    public init(canceled_count: Int) { self.canceled_count = canceled_count }
}

/// `GET /v1/queue/metrics`: `total_jobs` is waiting + running, as Together defines it.
public struct QueueMetricsResponse: Sendable, Codable, Equatable {
    public var messages_waiting: Int
    public var messages_running: Int
    public var total_jobs: Int

    public init(messages_waiting: Int, messages_running: Int) {
        self.messages_waiting = messages_waiting
        self.messages_running = messages_running
        self.total_jobs = messages_waiting + messages_running
    }
}
