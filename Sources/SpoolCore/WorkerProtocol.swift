import Foundation

// The worker protocol (docs/worker-protocol.md): lease, heartbeat, complete, fail, release.
// The broker validates requests from parsed JSON so every refusal names its field; the worker SDK
// writes the same types through their `jsonValue` where they have one, and Codable otherwise.

/// Limits of the worker protocol that both sides know.
public enum WorkerProtocolLimits {
    /// Longest long-poll a lease may ask for.
    public static let maxWaitSeconds: Double = 30
    /// Shortest and longest lease a worker may ask for.
    public static let leaseSeconds: ClosedRange<Double> = 1...3600
    /// Most jobs one lease may ask for.
    public static let maxJobsPerLease = 100
    /// Most models one worker may serve.
    public static let maxModelsPerLease = 50
    /// Most log lines one heartbeat may carry.
    public static let maxLogLinesPerWrite = 1000
    /// Longest log line kept; longer ones are cut.
    public static let maxLogLineBytes = 16 * 1024
}

/// `POST /v1/worker/lease`: the models a worker serves and how many jobs it can take now.
public struct LeaseRequest: Sendable, Equatable {
    /// Names the worker in job records and logs; stable across its leases.
    public var worker_id: String
    public var models: [String]
    /// Defaults to 1.
    public var max_jobs: Int
    /// How long to wait for a job when none is pending. Defaults to 0 (answer at once).
    public var wait_seconds: Double
    /// How long each claimed job's lease lasts without a heartbeat. Defaults to 30.
    public var lease_seconds: Double
    /// The host the worker runs on, for operators.
    public var host: String?

    public init(
        worker_id: String, models: [String], max_jobs: Int = 1, wait_seconds: Double = 0, lease_seconds: Double = 30,
        host: String? = nil
    ) {
        self.worker_id = worker_id
        self.models = models
        self.max_jobs = max_jobs
        self.wait_seconds = wait_seconds
        self.lease_seconds = lease_seconds
        self.host = host
    }

    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        worker_id = try body.requiredString("worker_id")
        guard worker_id.unicodeScalars.count <= 200 else {
            throw .invalidRequest("'worker_id' is longer than 200 characters.", code: "invalid_field", param: "worker_id")
        }
        models = try body.requiredStringArray("models", maxCount: WorkerProtocolLimits.maxModelsPerLease)
        max_jobs = try body.optionalInt("max_jobs", in: 1...WorkerProtocolLimits.maxJobsPerLease) ?? 1
        wait_seconds = try body.optionalSeconds("wait_seconds", in: 0...WorkerProtocolLimits.maxWaitSeconds) ?? 0
        lease_seconds = try body.optionalSeconds("lease_seconds", in: WorkerProtocolLimits.leaseSeconds) ?? 30
        host = try body.optionalString("host", maxLength: 255)
    }
}

/// A job handed to a worker: what to run and the lease token that fences its writes.
public struct LeasedJob: Sendable, Equatable {
    public var request_id: String
    public var model: String
    /// Names this attempt; every write about the job must carry it.
    public var lease_token: String
    /// 1 for the first run, 2 after one retry, and so on.
    public var attempt: Int32
    public var priority: Int32
    public var payload: [String: JSONValue]
    public var info: [String: JSONValue]
    /// When the lease ends unless a heartbeat extends it (RFC 3339).
    public var lease_expires_at: String
    /// When the broker asks this attempt to stop, however often it heartbeats (RFC 3339).
    public var run_deadline_at: String
    /// The endpoint within the app the client called (fal's `/{owner}/{app}/{path}`), if any.
    public var path: String?

    public init(
        request_id: String, model: String, lease_token: String, attempt: Int32, priority: Int32, payload: [String: JSONValue],
        info: [String: JSONValue], lease_expires_at: Date, run_deadline_at: Date, path: String? = nil
    ) {
        self.path = path
        self.request_id = request_id
        self.model = model
        self.lease_token = lease_token
        self.attempt = attempt
        self.priority = priority
        self.payload = payload
        self.info = info
        self.lease_expires_at = RFC3339.string(from: lease_expires_at)
        self.run_deadline_at = RFC3339.string(from: run_deadline_at)
    }
}

/// The answer to a lease: the claimed jobs, or none when the wait ended first.
public struct LeaseResponse: Sendable, Equatable {
    public var jobs: [LeasedJob]
    public init(jobs: [LeasedJob]) { self.jobs = jobs }
}

/// One line of a job's log.
public struct JobLogLine: Sendable, Codable, Equatable {
    public var message: String
    /// debug, info, warning, error, stdout or stderr. Defaults to info.
    public var level: String
    /// Who wrote it, such as `worker` or `handler`. Defaults to worker.
    public var source: String
    /// When it was written (RFC 3339); defaults to when the broker received it.
    public var timestamp: String?

    public static let levels: Set<String> = ["debug", "info", "warning", "error", "stdout", "stderr"]

    public init(message: String, level: String = "info", source: String = "worker", timestamp: Date? = nil) {
        self.message = message
        self.level = level
        self.source = source
        self.timestamp = timestamp.map(RFC3339.string(from:))
    }

    /// A log line given as a bare string or as an object.
    init(json: JSONValue, field: String) throws(SpoolError) {
        if case .string(let message) = json {
            self.init(message: Self.truncated(message))
            return
        }
        guard let members = json.objectValue else {
            throw .invalidRequest("Each entry of '\(field)' must be a string or an object with a message.", code: "invalid_type", param: field)
        }
        let line = try RequestFields(json)
        guard case .string(let message)? = members["message"] else {
            throw .invalidRequest("Each entry of '\(field)' needs a 'message' string.", code: "invalid_field", param: field)
        }
        let level = try line.optionalString("level", maxLength: 16)?.lowercased() ?? "info"
        guard Self.levels.contains(level) else {
            throw .invalidRequest(
                "Log level '\(level)' is not one of \(Self.levels.sorted().joined(separator: ", ")).", code: "invalid_field", param: field)
        }
        let source = try line.optionalString("source", maxLength: 64) ?? "worker"
        var timestamp = try line.optionalString("timestamp", maxLength: 64)
        if let written = timestamp {
            // Checked as PostgreSQL will read it: a time it refuses would fail the whole write.
            guard let normalized = RFC3339.normalized(written) else {
                throw .invalidRequest(
                    "Log timestamp '\(written)' is not an RFC 3339 time PostgreSQL can store (YYYY-MM-DDTHH:MM:SS[.ffffff] and Z or a UTC offset within ±15:59).",
                    code: "invalid_field", param: field)
            }
            timestamp = normalized
        }
        self.init(message: Self.truncated(message), level: level, source: source)
        // Kept as written (normalized, not reformatted from a Date, which can move the last digit).
        self.timestamp = timestamp
    }

    static func truncated(_ message: String) -> String {
        guard message.utf8.count > WorkerProtocolLimits.maxLogLineBytes else { return message }
        return String(decoding: message.utf8.prefix(WorkerProtocolLimits.maxLogLineBytes), as: UTF8.self) + "…"
    }

    /// The lines of a write; nil when it sent none (as the worker's encoding leaves them out).
    static func lines(_ body: RequestFields, field: String = "logs") throws(SpoolError) -> [JobLogLine]? {
        guard let entries = try body.optionalArray(field) else { return nil }
        guard entries.count <= WorkerProtocolLimits.maxLogLinesPerWrite else {
            throw .invalidRequest(
                "'\(field)' holds \(entries.count) lines; send at most \(WorkerProtocolLimits.maxLogLinesPerWrite) per request.",
                code: "invalid_field", param: field)
        }
        var lines: [JobLogLine] = []
        for entry in entries { lines.append(try JobLogLine(json: entry, field: field)) }
        return lines
    }
}

/// What every fenced write of a worker carries: the lease token that fences it, an emit merged
/// into the job's `info` (top-level keys replace), and log lines. Heartbeat, complete and fail add
/// fields of their own; a release carries nothing more.
public struct LeaseReport: Sendable, Equatable {
    public var lease_token: String
    public var info: [String: JSONValue]?
    public var logs: [JobLogLine]?

    public init(lease_token: String, info: [String: JSONValue]? = nil, logs: [JobLogLine]? = nil) {
        self.lease_token = lease_token
        self.info = info
        self.logs = logs
    }

    public init(json: JSONValue) throws(SpoolError) { try self.init(RequestFields(json)) }

    init(_ body: RequestFields) throws(SpoolError) {
        lease_token = try body.requiredString("lease_token")
        info = try body.optionalObject("info")
        logs = try JobLogLine.lines(body)
    }
}

/// `POST /v1/worker/jobs/{request_id}/release`: a draining worker hands an unfinished job back.
public typealias ReleaseRequest = LeaseReport

/// `POST /v1/worker/jobs/{request_id}/heartbeat`: keeps the lease, emits progress into `info`, adds log lines.
public struct HeartbeatRequest: Sendable, Equatable {
    public var report: LeaseReport
    /// The lease to keep from now; defaults to the length the lease was taken with.
    public var lease_seconds: Double?

    public init(_ report: LeaseReport, lease_seconds: Double? = nil) {
        self.report = report
        self.lease_seconds = lease_seconds
    }

    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        report = try LeaseReport(body)
        lease_seconds = try body.optionalSeconds("lease_seconds", in: WorkerProtocolLimits.leaseSeconds)
    }
}

/// The answer to a heartbeat: the new lease deadline, and whether the job should stop.
public struct HeartbeatResponse: Sendable, Equatable {
    public var lease_expires_at: String
    /// True once the broker asked the job to stop (canceled, or past its maximum run time).
    public var stop: Bool
    public var stop_reason: StopReason?

    public init(lease_expires_at: Date, stop_reason: StopReason?) {
        self.lease_expires_at = RFC3339.string(from: lease_expires_at)
        self.stop = stop_reason != nil
        self.stop_reason = stop_reason
    }
}

/// `POST /v1/worker/jobs/{request_id}/complete`: the job's outputs (its report's emit is merged into `info` with them).
public struct CompleteRequest: Sendable, Equatable {
    public var report: LeaseReport
    public var outputs: [String: JSONValue]

    public init(_ report: LeaseReport, outputs: [String: JSONValue]) {
        self.report = report
        self.outputs = outputs
    }

    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        report = try LeaseReport(body)
        outputs = try body.optionalObject("outputs") ?? [:]
    }
}

/// `POST /v1/worker/jobs/{request_id}/fail`: why the job failed, and whether it may run again.
public struct FailRequest: Sendable, Equatable {
    public var report: LeaseReport
    public var error: String
    /// Defaults to false: a job a worker fails is not retried unless the worker says it may be.
    public var retryable: Bool

    public init(_ report: LeaseReport, error: String, retryable: Bool = false) {
        self.report = report
        self.error = error
        self.retryable = retryable
    }

    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        report = try LeaseReport(body)
        error = JobLogLine.truncated(try body.requiredString("error"))
        retryable = try body.optionalBool("retryable") ?? false
    }
}

/// The answer to complete, fail and release: where the job went.
public struct JobWriteResponse: Sendable, Equatable {
    public var request_id: String
    public var status: JobStatus
    public var retries: Int32

    public init(request_id: String, status: JobStatus, retries: Int32) {
        self.request_id = request_id
        self.status = status
        self.retries = retries
    }
}

/// `POST /v1/worker/complete`: several completions in one request (a worker finishing many short jobs).
public struct CompleteManyRequest: Sendable, Equatable {
    public var completions: [CompleteManyItem]

    public static let maxItems = 1000

    public init(completions: [CompleteManyItem]) { self.completions = completions }

    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        guard let items = try body.optionalArray("completions"), !items.isEmpty, items.count <= Self.maxItems else {
            throw .invalidRequest("'completions' must hold 1 to \(Self.maxItems) completions.", code: "invalid_field", param: "completions")
        }
        var completions: [CompleteManyItem] = []
        for item in items {
            let fields = try RequestFields(item)
            completions.append(
                CompleteManyItem(request_id: try fields.requiredString("request_id"), complete: try CompleteRequest(json: item)))
        }
        self.completions = completions
    }
}

extension CompleteManyRequest {
    /// The broker's reading of a grouped complete: the envelope must be right (else the whole request is a
    /// 400), but each completion is judged on its own, so a bad one is refused alone.
    public static func items(json: JSONValue) throws(SpoolError) -> [(requestID: String, complete: Result<CompleteRequest, SpoolError>)] {
        let body = try RequestFields(json)
        guard let items = try body.optionalArray("completions"), !items.isEmpty, items.count <= maxItems else {
            throw .invalidRequest("'completions' must hold 1 to \(maxItems) completions.", code: "invalid_field", param: "completions")
        }
        return items.map { item in
            let requestID = item.objectValue?["request_id"]?.stringValue ?? ""
            do throws(SpoolError) {
                let fields = try RequestFields(item)
                _ = try fields.requiredString("request_id")
                return (requestID, .success(try CompleteRequest(json: item)))
            } catch {
                return (requestID, .failure(error))
            }
        }
    }
}

/// One completion of a grouped complete: the job it is for, and what a single complete would carry.
public struct CompleteManyItem: Sendable, Equatable {
    public var request_id: String
    public var complete: CompleteRequest

    public init(request_id: String, complete: CompleteRequest) {
        self.request_id = request_id
        self.complete = complete
    }
}

/// The answer to a grouped complete: one result per completion, in order.
public struct CompleteManyResponse: Sendable, Equatable {
    public var results: [CompleteManyResult]
    public init(results: [CompleteManyResult]) { self.results = results }
}

/// Where one completion left its job, or why it was refused (`error`: lease_lost, job_not_found, …).
public struct CompleteManyResult: Sendable, Equatable {
    public var request_id: String
    public var status: JobStatus?
    public var retries: Int32?
    public var error: CompleteManyItemError?
}

extension CompleteManyResult {
    /// Where the completion left its job, or the refusal a single complete would have answered.
    public init(request_id: String, status: JobStatus? = nil, retries: Int32? = nil, refusal: SpoolError? = nil) {
        self.init(request_id: request_id, status: status, retries: retries, error: refusal.map(CompleteManyItemError.init))
    }
}

/// Why one item of a grouped complete was refused: the code and message a single request would have answered.
public struct CompleteManyItemError: Sendable, Equatable {
    public var code: String
    public var message: String
    public var http_status: Int
}

extension CompleteManyItemError {
    /// The refusal as a single request would have answered it.
    init(_ refusal: SpoolError) {
        self.init(code: refusal.code, message: refusal.message, http_status: refusal.httpStatus)
    }
}
