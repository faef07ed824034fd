import Foundation

// Shapes of fal's queue API (`fal-client` 1.0.3) under the broker's /fal prefix.

/// `POST /fal/{owner}/{app}[/{path}]` → where to follow the request.
public struct FalSubmitResponse: Sendable, Codable, Equatable {
    public var request_id: String
    public var response_url: String
    public var status_url: String
    public var cancel_url: String
    public var queue_position: Int

    public init(request_id: String, baseURL: String, queue_position: Int) {
        self.request_id = request_id
        self.response_url = baseURL
        self.status_url = baseURL + "/status"
        self.cancel_url = baseURL + "/cancel"
        self.queue_position = queue_position
    }
}

/// A log line as fal reports it.
public struct FalLogLine: Sendable, Equatable, JSONValueEncodable {
    public var message: String
    /// DEBUG, INFO, WARN, ERROR, STDOUT or STDERR.
    public var level: String
    public var source: String
    public var timestamp: String

    public init(message: String, level: String, source: String, timestamp: Date) {
        self.message = message
        self.level = Self.level(level)
        self.source = source
        self.timestamp = RFC3339.string(from: timestamp)
    }

    public var jsonValue: JSONValue {
        ["message": .string(message), "level": .string(level), "source": .string(source), "timestamp": .string(timestamp)]
    }

    /// Spool's log levels in fal's words.
    public static func level(_ level: String) -> String {
        switch level {
        case "debug": "DEBUG"
        case "warning": "WARN"
        case "error": "ERROR"
        case "stdout": "STDOUT"
        case "stderr": "STDERR"
        default: "INFO"
        }
    }
}

/// `GET …/requests/{id}/status`: IN_QUEUE, IN_PROGRESS or COMPLETED.
///
/// fal has no failed status: a failed or canceled job is COMPLETED with `error` and `error_type`.
public struct FalStatusResponse: Sendable, Equatable, JSONValueEncodable {
    public enum Status: String, Sendable {
        case inQueue = "IN_QUEUE"
        case inProgress = "IN_PROGRESS"
        case completed = "COMPLETED"
    }

    public var status: Status
    public var request_id: String
    public var response_url: String
    public var status_url: String
    public var cancel_url: String
    public var queue_position: Int?
    /// Seconds until it should start (an extension); IN_QUEUE only.
    public var estimated_wait_seconds: Double?
    /// The log lines when asked for (`logs=1`), else null; fal's clients read the key in every state.
    public var logs: [FalLogLine]?
    /// COMPLETED only: at least `inference_time` in seconds.
    public var metrics: [String: JSONValue]?
    public var error: String?
    public var error_type: String?

    public init(
        status: Status, request_id: String, baseURL: String, queue_position: Int? = nil, estimated_wait_seconds: Double? = nil,
        logs: [FalLogLine]? = nil, metrics: [String: JSONValue]? = nil, error: String? = nil, error_type: String? = nil
    ) {
        self.status = status
        self.request_id = request_id
        self.response_url = baseURL
        self.status_url = baseURL + "/status"
        self.cancel_url = baseURL + "/cancel"
        self.queue_position = queue_position
        self.estimated_wait_seconds = estimated_wait_seconds
        self.logs = logs
        self.metrics = metrics
        self.error = error
        self.error_type = error_type
    }

    /// Every state's members (logs null unless asked for), then the state's own: fal's clients read them by state.
    public var jsonValue: JSONValue {
        var object: [String: JSONValue] = [
            "status": .string(status.rawValue), "request_id": .string(request_id), "response_url": .string(response_url),
            "status_url": .string(status_url), "cancel_url": .string(cancel_url), "logs": logs.map { .array($0.map(\.jsonValue)) } ?? .null,
        ]
        switch status {
        case .inQueue:
            object["queue_position"] = .int(Int64(queue_position ?? 0))
            object["estimated_wait_seconds"] = estimated_wait_seconds.map(JSONValue.double) ?? .null
        case .inProgress:
            break
        case .completed:
            object["metrics"] = .object(metrics ?? [:])
            if let error { object["error"] = .string(error) }
            if let error_type { object["error_type"] = .string(error_type) }
        }
        return .object(object)
    }
}

/// The answer to `PUT …/requests/{id}/cancel`.
public struct FalCancelResponse: Sendable, Codable, Equatable {
    /// OK (a queued request, removed), CANCELLATION_REQUESTED (a running one), ALREADY_COMPLETED or NOT_FOUND.
    public var status: String
    public init(status: String) { self.status = status }
}

/// fal's request headers that shape a submit.
public enum FalHeaders {
    /// `normal` or `low`: fal-client's `priority` argument.
    public static let queuePriority = "X-Fal-Queue-Priority"
    /// Seconds a request may wait to start: fal-client's `start_timeout` argument.
    public static let requestTimeout = "X-Fal-Request-Timeout"
    /// Set on a 504 for a request that did not start in time, so clients do not retry it.
    public static let requestTimeoutType = "X-Fal-Request-Timeout-Type"
    /// Set on every answer about a request; fal's clients tell our answers from a proxy's by it.
    public static let requestID = "X-Fal-Request-Id"

    /// The job priority of fal's queue priorities: normal jobs run before low ones.
    public static func priority(_ value: String?) throws(SpoolError) -> Int32 {
        switch value?.lowercased() {
        case nil, "normal": 0
        case "low": -1
        case let other?:
            throw .invalidRequest("\(queuePriority) must be 'normal' or 'low', got '\(other)'.", code: "invalid_header", param: queuePriority)
        }
    }

    /// Start timeout seconds from the header, if any: a number greater than 1.
    public static func startTimeout(_ value: String?) throws(SpoolError) -> Double? {
        guard let value else { return nil }
        guard let seconds = Double(value), seconds > 1, seconds <= 30 * 24 * 3600 else {
            throw .invalidRequest(
                "\(requestTimeout) must be a number of seconds above 1, got '\(value)'.", code: "invalid_header", param: requestTimeout)
        }
        return seconds
    }
}
