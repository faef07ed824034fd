import Foundation
import SpoolCore

// Shapes of fal's queue API (`fal-client` 1.0.3) under the broker's /fal prefix.

/// An answer about one fal request: where its client follows it. The status and cancel URLs are
/// always the result URL's, so only that is kept.
protocol FalRequestAnswer {
    var response_url: String { get }
}

extension FalRequestAnswer {
    var status_url: String { response_url + "/status" }
    var cancel_url: String { response_url + "/cancel" }
}

/// `POST /fal/{owner}/{app}[/{path}]` → where to follow the request.
struct FalSubmitResponse: Sendable, Equatable, FalRequestAnswer, JSONValueEncodable {
    var request_id: String
    var response_url: String
    var queue_position: Int

    var jsonValue: JSONValue {
        [
            "request_id": .string(request_id), "response_url": .string(response_url), "status_url": .string(status_url),
            "cancel_url": .string(cancel_url), "queue_position": .int(Int64(queue_position)),
        ]
    }
}

/// A log line as fal reports it.
struct FalLogLine: Sendable, Equatable, JSONValueEncodable {
    var message: String
    /// DEBUG, INFO, WARN, ERROR, STDOUT or STDERR.
    var level: String
    var source: String
    var timestamp: String

    init(message: String, level: String, source: String, timestamp: Date) {
        self.message = message
        self.level = Self.level(level)
        self.source = source
        self.timestamp = RFC3339.string(from: timestamp)
    }

    var jsonValue: JSONValue {
        ["message": .string(message), "level": .string(level), "source": .string(source), "timestamp": .string(timestamp)]
    }

    /// Spool's log levels in fal's words.
    static func level(_ level: String) -> String {
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
struct FalStatusResponse: Sendable, Equatable, FalRequestAnswer, JSONValueEncodable {
    enum Status: String, Sendable {
        case inQueue = "IN_QUEUE"
        case inProgress = "IN_PROGRESS"
        case completed = "COMPLETED"
    }

    var status: Status
    var request_id: String
    var response_url: String
    var queue_position: Int?
    /// Seconds until it should start (an extension); IN_QUEUE only.
    var estimated_wait_seconds: Double?
    /// The log lines when asked for (`logs=1`), else null; fal's clients read the key in every state.
    var logs: [FalLogLine]?
    /// COMPLETED only: at least `inference_time` in seconds.
    var metrics: [String: JSONValue]?
    var error: String?
    var error_type: String?

    /// Every state's members (logs null unless asked for), then the state's own: fal's clients read them by state.
    var jsonValue: JSONValue {
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
struct FalCancelResponse: Sendable, Codable, Equatable {
    /// OK (a queued request, removed), CANCELLATION_REQUESTED (a running one), ALREADY_COMPLETED or NOT_FOUND.
    var status: String
}

/// fal's request headers that shape a submit.
enum FalHeaders {
    /// `normal` or `low`: fal-client's `priority` argument.
    static let queuePriority = "X-Fal-Queue-Priority"
    /// Seconds a request may wait to start: fal-client's `start_timeout` argument.
    static let requestTimeout = "X-Fal-Request-Timeout"
    /// Set on a 504 for a request that did not start in time, so clients do not retry it.
    static let requestTimeoutType = "X-Fal-Request-Timeout-Type"
    /// Set on every answer about a request; fal's clients tell our answers from a proxy's by it.
    static let requestID = "X-Fal-Request-Id"

    /// The job priority of fal's queue priorities: normal jobs run before low ones.
    static func priority(_ value: String?) throws(SpoolError) -> Int32 {
        switch value?.lowercased() {
        case nil, "normal": 0
        case "low": -1
        case let other?:
            throw .invalidRequest("\(queuePriority) must be 'normal' or 'low', got '\(other)'.", code: "invalid_header", param: queuePriority)
        }
    }

    /// Start timeout seconds from the header, if any: a number greater than 1.
    static func startTimeout(_ value: String?) throws(SpoolError) -> Double? {
        guard let value else { return nil }
        guard let seconds = Double(value), seconds > 1, seconds <= 30 * 24 * 3600 else {
            throw .invalidRequest(
                "\(requestTimeout) must be a number of seconds above 1, got '\(value)'.", code: "invalid_header", param: requestTimeout)
        }
        return seconds
    }
}
