// The hot messages of the worker protocol and the queue API convert to and from JSONValue by
// hand: Foundation's JSONEncoder and JSONDecoder cost more per job than the claim itself
// (BENCHMARKS.md). Codable stays for everything else; both give the same JSON.

/// A message that writes itself as JSON without Codable.
public protocol JSONValueEncodable {
    var jsonValue: JSONValue { get }
}

extension JSONValue: JSONValueEncodable {
    public var jsonValue: JSONValue { self }
}

/// A message read straight from parsed JSON without Codable.
public protocol JSONValueDecodable {
    init(jsonValue: JSONValue) throws(JSONShapeError)
}

/// An answer that does not have the shape its type expects.
public struct JSONShapeError: Error, Sendable, CustomStringConvertible {
    public let field: String
    public let expected: String
    public var description: String { "'\(field)' is missing or not \(expected)" }
}

/// Typed access to the members of an object being decoded.
struct JSONMembers {
    let members: [String: JSONValue]

    init(_ value: JSONValue, _ name: String = "answer") throws(JSONShapeError) {
        guard case .object(let members) = value else { throw JSONShapeError(field: name, expected: "an object") }
        self.members = members
    }

    func string(_ key: String) throws(JSONShapeError) -> String {
        guard case .string(let value)? = members[key] else { throw JSONShapeError(field: key, expected: "a string") }
        return value
    }

    func optionalString(_ key: String) throws(JSONShapeError) -> String? {
        switch members[key] {
        case nil, .null?: return nil
        case .string(let value)?: return value
        default: throw JSONShapeError(field: key, expected: "a string")
        }
    }

    func int32(_ key: String) throws(JSONShapeError) -> Int32 {
        guard let value = try optionalInt32(key) else { throw JSONShapeError(field: key, expected: "an integer") }
        return value
    }

    func optionalInt32(_ key: String) throws(JSONShapeError) -> Int32? {
        switch members[key] {
        case nil, .null?: return nil
        case .int(let value)? where Int32(exactly: value) != nil: return Int32(value)
        default: throw JSONShapeError(field: key, expected: "a 32-bit integer")
        }
    }

    func int(_ key: String) throws(JSONShapeError) -> Int {
        guard case .int(let value)? = members[key] else { throw JSONShapeError(field: key, expected: "an integer") }
        return Int(value)
    }

    func bool(_ key: String) throws(JSONShapeError) -> Bool {
        guard case .bool(let value)? = members[key] else { throw JSONShapeError(field: key, expected: "a boolean") }
        return value
    }

    func object(_ key: String) throws(JSONShapeError) -> [String: JSONValue] {
        guard case .object(let value)? = members[key] else { throw JSONShapeError(field: key, expected: "an object") }
        return value
    }

    func array(_ key: String) throws(JSONShapeError) -> [JSONValue] {
        guard case .array(let value)? = members[key] else { throw JSONShapeError(field: key, expected: "an array") }
        return value
    }

    func optionalObject(_ key: String) throws(JSONShapeError) -> JSONValue? {
        switch members[key] {
        case nil, .null?: return nil
        case let value? where value.objectValue != nil: return value
        default: throw JSONShapeError(field: key, expected: "an object")
        }
    }

    func rawValue<Value: RawRepresentable<String>>(_ key: String, as type: Value.Type) throws(JSONShapeError) -> Value? {
        guard let text = try optionalString(key) else { return nil }
        guard let value = Value(rawValue: text) else { throw JSONShapeError(field: key, expected: "a known \(Value.self)") }
        return value
    }
}

/// Building objects: optional members are left out when nil, as Codable's synthesized encoding does.
extension Dictionary where Key == String, Value == JSONValue {
    mutating func set(_ key: String, _ value: String?) { if let value { self[key] = .string(value) } }
    mutating func set(_ key: String, _ value: Int32?) { if let value { self[key] = .int(Int64(value)) } }
    mutating func set(_ key: String, _ value: [String: JSONValue]?) { if let value { self[key] = .object(value) } }
    mutating func set(_ key: String, _ value: [JobLogLine]?) { if let value { self[key] = .array(value.map(\.jsonValue)) } }
}

extension JSONValue {
    /// Text as a JSON string, or null.
    init(_ text: String?) { self = text.map(JSONValue.string) ?? .null }
}

// MARK: The worker protocol

extension LeaseRequest: JSONValueEncodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = [
            "worker_id": .string(worker_id), "models": .array(models.map(JSONValue.string)), "max_jobs": .int(Int64(max_jobs)),
            "wait_seconds": .double(wait_seconds), "lease_seconds": .double(lease_seconds),
        ]
        members.set("host", host)
        return .object(members)
    }
}

extension LeasedJob: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = [
            "request_id": .string(request_id), "model": .string(model), "lease_token": .string(lease_token),
            "attempt": .int(Int64(attempt)), "priority": .int(Int64(priority)), "payload": .object(payload), "info": .object(info),
            "lease_expires_at": .string(lease_expires_at), "run_deadline_at": .string(run_deadline_at),
        ]
        members.set("path", path)
        return .object(members)
    }

    public init(jsonValue: JSONValue) throws(JSONShapeError) {
        let job = try JSONMembers(jsonValue, "jobs[]")
        request_id = try job.string("request_id")
        model = try job.string("model")
        lease_token = try job.string("lease_token")
        attempt = try job.int32("attempt")
        priority = try job.int32("priority")
        payload = try job.object("payload")
        info = try job.object("info")
        lease_expires_at = try job.string("lease_expires_at")
        run_deadline_at = try job.string("run_deadline_at")
        path = try job.optionalString("path")
    }
}

extension LeaseResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue { .object(["jobs": .array(jobs.map(\.jsonValue))]) }

    public init(jsonValue: JSONValue) throws(JSONShapeError) {
        var jobs: [LeasedJob] = []
        for job in try JSONMembers(jsonValue).array("jobs") { jobs.append(try LeasedJob(jsonValue: job)) }
        self.init(jobs: jobs)
    }
}

extension JobLogLine: JSONValueEncodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["message": .string(message), "level": .string(level), "source": .string(source)]
        members.set("timestamp", timestamp)
        return .object(members)
    }
}

extension HeartbeatRequest: JSONValueEncodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["lease_token": .string(lease_token)]
        members.set("info", info)
        members.set("logs", logs)
        if let lease_seconds { members["lease_seconds"] = .double(lease_seconds) }
        return .object(members)
    }
}

extension HeartbeatResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue {
        .object(["lease_expires_at": .string(lease_expires_at), "stop": .bool(stop), "stop_reason": JSONValue(stop_reason?.rawValue)])
    }

    public init(jsonValue: JSONValue) throws(JSONShapeError) {
        let answer = try JSONMembers(jsonValue)
        lease_expires_at = try answer.string("lease_expires_at")
        stop_reason = try answer.rawValue("stop_reason", as: StopReason.self)
        stop = try answer.bool("stop")
    }
}

extension CompleteRequest: JSONValueEncodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["lease_token": .string(lease_token), "outputs": .object(outputs)]
        members.set("info", info)
        members.set("logs", logs)
        return .object(members)
    }
}

extension FailRequest: JSONValueEncodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["lease_token": .string(lease_token), "error": .string(error), "retryable": .bool(retryable)]
        members.set("info", info)
        members.set("logs", logs)
        return .object(members)
    }
}

extension ReleaseRequest: JSONValueEncodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["lease_token": .string(lease_token)]
        members.set("info", info)
        members.set("logs", logs)
        return .object(members)
    }
}

extension JobWriteResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue {
        .object(["request_id": .string(request_id), "status": .string(status.rawValue), "retries": .int(Int64(retries))])
    }

    public init(jsonValue: JSONValue) throws(JSONShapeError) {
        let answer = try JSONMembers(jsonValue)
        guard let status = try answer.rawValue("status", as: JobStatus.self) else {
            throw JSONShapeError(field: "status", expected: "a job status")
        }
        self.init(request_id: try answer.string("request_id"), status: status, retries: try answer.int32("retries"))
    }
}

extension CompleteManyItem: JSONValueEncodable {
    public var jsonValue: JSONValue {
        guard case .object(var members) = complete.jsonValue else { return .null }
        members["request_id"] = .string(request_id)
        return .object(members)
    }
}

extension CompleteManyRequest: JSONValueEncodable {
    public var jsonValue: JSONValue { .object(["completions": .array(completions.map(\.jsonValue))]) }
}

extension CompleteManyItemError: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue {
        .object(["code": .string(code), "message": .string(message), "http_status": .int(Int64(http_status))])
    }

    public init(jsonValue: JSONValue) throws(JSONShapeError) {
        let error = try JSONMembers(jsonValue, "error")
        self.init(code: try error.string("code"), message: try error.string("message"), http_status: try error.int("http_status"))
    }
}

extension CompleteManyResult: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["request_id": .string(request_id)]
        members.set("status", status?.rawValue)
        members.set("retries", retries)
        if let error { members["error"] = error.jsonValue }
        return .object(members)
    }

    public init(jsonValue: JSONValue) throws(JSONShapeError) {
        let result = try JSONMembers(jsonValue, "results[]")
        self.init(
            request_id: try result.string("request_id"), status: try result.rawValue("status", as: JobStatus.self),
            retries: try result.optionalInt32("retries"),
            error: try result.optionalObject("error").map { value throws(JSONShapeError) in try CompleteManyItemError(jsonValue: value) })
    }
}

extension CompleteManyResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue { .object(["results": .array(results.map(\.jsonValue))]) }

    public init(jsonValue: JSONValue) throws(JSONShapeError) {
        var results: [CompleteManyResult] = []
        for result in try JSONMembers(jsonValue).array("results") { results.append(try CompleteManyResult(jsonValue: result)) }
        self.init(results: results)
    }
}

// MARK: The queue API's busiest answers

extension SubmitResponse: JSONValueEncodable {
    public var jsonValue: JSONValue { .object(["requestId": .string(requestId)]) }
}

extension WebhookStatus: JSONValueEncodable {
    public var jsonValue: JSONValue {
        .object([
            "webhook_id": JSONValue(webhook_id), "url": .string(url), "state": .string(state), "attempts": .int(Int64(attempts)),
            "last_status_code": last_status_code.map { .int(Int64($0)) } ?? .null, "last_error": JSONValue(last_error),
            "last_attempt_at": JSONValue(last_attempt_at), "next_attempt_at": JSONValue(next_attempt_at),
        ])
    }
}

extension JobStatusResponse: JSONValueEncodable {
    // Optional members are null rather than left out, as the Codable encoding writes them; `logs` only when asked for.
    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = [
            "model": .string(model), "request_id": .string(request_id), "status": .string(status.rawValue),
            "priority": .int(Int64(priority)), "info": .object(info), "inputs": .object(inputs),
            "outputs": outputs.map(JSONValue.object) ?? .null, "error": JSONValue(error), "error_type": JSONValue(error_type),
            "retries": .int(Int64(retries)), "created_at": .string(created_at), "claimed_at": JSONValue(claimed_at),
            "done_at": JSONValue(done_at), "warnings": .array(warnings.map(JSONValue.string)),
            "queue_position": queue_position.map { .int(Int64($0)) } ?? .null,
            "estimated_wait_seconds": estimated_wait_seconds.map(JSONValue.double) ?? .null,
            "webhook": webhook?.jsonValue ?? .null,
        ]
        members.set("logs", logs)
        return .object(members)
    }
}
