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

    public init(model: String, requestID: String) {
        self.model = model
        self.requestID = requestID
    }

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

    // Optional members are written as null, not left out, so every field is always present;
    // `logs` only when asked for.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(model, forKey: .model)
        try container.encode(request_id, forKey: .request_id)
        try container.encode(status, forKey: .status)
        try container.encode(priority, forKey: .priority)
        try container.encode(info, forKey: .info)
        try container.encode(inputs, forKey: .inputs)
        try container.encode(outputs, forKey: .outputs)
        try container.encode(error, forKey: .error)
        try container.encode(error_type, forKey: .error_type)
        try container.encode(retries, forKey: .retries)
        try container.encode(created_at, forKey: .created_at)
        try container.encode(claimed_at, forKey: .claimed_at)
        try container.encode(done_at, forKey: .done_at)
        try container.encode(warnings, forKey: .warnings)
        try container.encode(queue_position, forKey: .queue_position)
        try container.encode(estimated_wait_seconds, forKey: .estimated_wait_seconds)
        try container.encode(webhook, forKey: .webhook)
        try container.encodeIfPresent(logs, forKey: .logs)
    }
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

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(webhook_id, forKey: .webhook_id)
        try container.encode(url, forKey: .url)
        try container.encode(state, forKey: .state)
        try container.encode(attempts, forKey: .attempts)
        try container.encode(last_status_code, forKey: .last_status_code)
        try container.encode(last_error, forKey: .last_error)
        try container.encode(last_attempt_at, forKey: .last_attempt_at)
        try container.encode(next_attempt_at, forKey: .next_attempt_at)
    }
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

/// RFC 3339 timestamps in UTC with milliseconds, as the SDKs parse them.
public enum RFC3339 {
    private static let style = Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt)

    /// Written by hand: the format style cost more than the rest of a status answer.
    public static func string(from date: Date) -> String {
        // From the reference date, as Date keeps it: converting to 1970 first can move the last digit.
        let sinceReference = date.timeIntervalSinceReferenceDate
        let wholeSeconds = sinceReference.rounded(.down)
        let millis = min(999, Int32((sinceReference - wholeSeconds) * 1000))
        var time = time_t(Int64(wholeSeconds) + 978_307_200)
        var parts = tm()
        guard gmtime_r(&time, &parts) != nil, parts.tm_year + 1900 >= 0, parts.tm_year + 1900 <= 9999 else { return date.formatted(style) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        func digits(_ value: Int32, _ count: Int) {
            var divisor: Int32 = 1
            for _ in 1..<count { divisor *= 10 }
            var value = value
            while divisor > 0 {
                bytes.append(UInt8(48 + value / divisor))
                value %= divisor
                divisor /= 10
            }
        }
        digits(parts.tm_year + 1900, 4)
        bytes.append(UInt8(ascii: "-"))
        digits(parts.tm_mon + 1, 2)
        bytes.append(UInt8(ascii: "-"))
        digits(parts.tm_mday, 2)
        bytes.append(UInt8(ascii: "T"))
        digits(parts.tm_hour, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(parts.tm_min, 2)
        bytes.append(UInt8(ascii: ":"))
        digits(parts.tm_sec, 2)
        bytes.append(UInt8(ascii: "."))
        digits(millis, 3)
        bytes.append(UInt8(ascii: "Z"))
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The format style's own writing, which `string(from:)` must match.
    static func formatStyleString(from date: Date) -> String { date.formatted(style) }

    public static func date(from string: String) -> Date? { try? style.parse(string) }

    /// The time in a form PostgreSQL's `timestamptz` accepts exactly as meant, or nil when it is
    /// not an RFC 3339 date-time PostgreSQL can store: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`,
    /// year 0001–9999, a day that exists, a UTC offset within ±15:59 (Foundation accepts more).
    public static func normalized(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        guard (20...35).contains(bytes.count) else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else { return nil }
                value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), bytes[4] == UInt8(ascii: "-"), let month = number(5..<7), bytes[7] == UInt8(ascii: "-"),
            let day = number(8..<10), [UInt8(ascii: "T"), UInt8(ascii: "t"), UInt8(ascii: " ")].contains(bytes[10]),
            let hour = number(11..<13), bytes[13] == UInt8(ascii: ":"), let minute = number(14..<16), bytes[16] == UInt8(ascii: ":"),
            let second = number(17..<19)
        else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        guard (1...9999).contains(year), (1...12).contains(month), (1...monthDays[month - 1]).contains(day), hour < 24, minute < 60,
            second <= 60
        else { return nil }
        var index = 19
        if bytes[index] == UInt8(ascii: ".") {
            index += 1
            let digits = index
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) { index += 1 }
            guard (1...9).contains(index - digits) else { return nil }
        }
        guard index < bytes.count else { return nil }
        let zone: String
        switch bytes[index] {
        case UInt8(ascii: "Z"), UInt8(ascii: "z"):
            guard index + 1 == bytes.count else { return nil }
            zone = "Z"
        case UInt8(ascii: "+"), UInt8(ascii: "-"):
            guard index + 6 == bytes.count, let offsetHours = number(index + 1..<index + 3), bytes[index + 3] == UInt8(ascii: ":"),
                let offsetMinutes = number(index + 4..<index + 6), offsetHours <= 15, offsetMinutes < 60
            else { return nil }
            zone = String(decoding: bytes[index...], as: UTF8.self)
        default:
            return nil
        }
        return String(decoding: bytes[0..<10], as: UTF8.self) + "T" + String(decoding: bytes[11..<index], as: UTF8.self) + zone
    }
}

/// Field access over a request body that refuses anything but what the API defines.
struct RequestFields {
    /// Longest model name accepted: long enough for `owner/app/path` ids, short enough to index.
    static let maxModelLength = 256
    let members: [String: JSONValue]

    init(_ json: JSONValue) throws(SpoolError) {
        guard let members = json.objectValue else {
            throw .invalidRequest("The request body must be a JSON object, not \(json.typeName).", code: "invalid_body")
        }
        self.members = members
    }

    func model() throws(SpoolError) -> String {
        let model = try requiredString("model")
        guard model.unicodeScalars.count <= Self.maxModelLength else {
            throw .invalidRequest("'model' is longer than \(Self.maxModelLength) characters.", code: "invalid_field", param: "model")
        }
        return model
    }

    func requiredString(_ name: String) throws(SpoolError) -> String {
        guard let value = members[name], value != .null else {
            throw .invalidRequest("'\(name)' is required.", code: "missing_field", param: name)
        }
        guard case .string(let string) = value else {
            throw .invalidRequest("'\(name)' must be a string, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard !string.isEmpty else {
            throw .invalidRequest("'\(name)' must not be empty.", code: "invalid_field", param: name)
        }
        return string
    }

    func requiredObject(_ name: String) throws(SpoolError) -> [String: JSONValue] {
        guard let value = members[name], value != .null else {
            throw .invalidRequest("'\(name)' is required and must be a JSON object.", code: "missing_field", param: name)
        }
        guard let object = value.objectValue else {
            throw .invalidRequest("'\(name)' must be a JSON object, not \(value.typeName).", code: "invalid_type", param: name)
        }
        return object
    }

    func optionalObject(_ name: String) throws(SpoolError) -> [String: JSONValue]? {
        guard let value = members[name], value != .null else { return nil }
        return try requiredObject(name)
    }

    func optionalString(_ name: String, maxLength: Int = 1024) throws(SpoolError) -> String? {
        guard let value = members[name], value != .null else { return nil }
        let string = try requiredString(name)
        guard string.unicodeScalars.count <= maxLength else {
            throw .invalidRequest("'\(name)' is longer than \(maxLength) characters.", code: "invalid_field", param: name)
        }
        return string
    }

    func optionalBool(_ name: String) throws(SpoolError) -> Bool? {
        guard let value = members[name], value != .null else { return nil }
        guard case .bool(let bool) = value else {
            throw .invalidRequest("'\(name)' must be true or false, not \(value.typeName).", code: "invalid_type", param: name)
        }
        return bool
    }

    /// A number of seconds within `range`; integers and fractions alike.
    func optionalSeconds(_ name: String, in range: ClosedRange<Double>) throws(SpoolError) -> Double? {
        guard let value = members[name], value != .null else { return nil }
        let seconds: Double
        switch value {
        case .int(let int): seconds = Double(int)
        case .double(let double): seconds = double
        default: throw .invalidRequest("'\(name)' must be a number of seconds, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard range.contains(seconds) else {
            throw .invalidRequest(
                "'\(name)' must be between \(range.lowerBound.formatted()) and \(range.upperBound.formatted()) seconds, got \(seconds.formatted()).",
                code: "invalid_field", param: name)
        }
        return seconds
    }

    /// An integer within `range`.
    func optionalInt(_ name: String, in range: ClosedRange<Int>) throws(SpoolError) -> Int? {
        guard let value = members[name], value != .null else { return nil }
        guard case .int(let int) = value else {
            throw .invalidRequest("'\(name)' must be an integer, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard let small = Int(exactly: int), range.contains(small) else {
            throw .invalidRequest(
                "'\(name)' must be between \(range.lowerBound) and \(range.upperBound), got \(int).", code: "invalid_field", param: name)
        }
        return small
    }

    /// A non-empty array of non-empty strings, at most `maxCount` of them.
    func requiredStringArray(_ name: String, maxCount: Int) throws(SpoolError) -> [String] {
        guard let value = members[name], value != .null else {
            throw .invalidRequest("'\(name)' is required.", code: "missing_field", param: name)
        }
        guard case .array(let elements) = value else {
            throw .invalidRequest("'\(name)' must be an array of strings, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard (1...maxCount).contains(elements.count) else {
            throw .invalidRequest("'\(name)' must hold 1 to \(maxCount) entries, got \(elements.count).", code: "invalid_field", param: name)
        }
        var strings: [String] = []
        for element in elements {
            guard case .string(let string) = element, !string.isEmpty, string.unicodeScalars.count <= Self.maxModelLength else {
                throw .invalidRequest(
                    "Every entry of '\(name)' must be a non-empty string of at most \(Self.maxModelLength) characters.",
                    code: "invalid_field", param: name)
            }
            strings.append(string)
        }
        return strings
    }

    func optionalArray(_ name: String) throws(SpoolError) -> [JSONValue]? {
        guard let value = members[name], value != .null else { return nil }
        guard case .array(let elements) = value else {
            throw .invalidRequest("'\(name)' must be an array, not \(value.typeName).", code: "invalid_type", param: name)
        }
        return elements
    }

    func optionalInt32(_ name: String) throws(SpoolError) -> Int32? {
        guard let value = members[name], value != .null else { return nil }
        guard case .int(let int) = value else {
            throw .invalidRequest("'\(name)' must be an integer, not \(value.typeName).", code: "invalid_type", param: name)
        }
        guard let small = Int32(exactly: int) else {
            throw .invalidRequest("'\(name)' must be between \(Int32.min) and \(Int32.max).", code: "invalid_field", param: name)
        }
        return small
    }
}
