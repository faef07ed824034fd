// The hot messages of the worker protocol and the queue API convert to and from JSONValue by
// hand: Foundation's JSONEncoder and JSONDecoder cost more per job than the claim itself
// (BENCHMARKS.md). The worker protocol's messages have only this encoding, read back by
// RequestFields (the broker's reader of requests, and the worker's of answers); the queue API's
// answers are also Codable for the client SDK, whose encode(to:) writes this same jsonValue.

/// A message that writes itself as JSON without Codable.
public protocol JSONValueEncodable {
    var jsonValue: JSONValue { get }
}

extension JSONValue: JSONValueEncodable {
    public var jsonValue: JSONValue { self }
}

/// A message read straight from parsed JSON without Codable.
public protocol JSONValueDecodable {
    init(jsonValue: JSONValue) throws(SpoolError)
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

    public init(jsonValue: JSONValue) throws(SpoolError) {
        let job = try RequestFields(jsonValue, of: "jobs[]")
        request_id = try job.requiredString("request_id")
        model = try job.requiredString("model")
        lease_token = try job.requiredString("lease_token")
        attempt = try job.requiredInt32("attempt")
        priority = try job.requiredInt32("priority")
        payload = try job.requiredObject("payload")
        info = try job.requiredObject("info")
        lease_expires_at = try job.requiredString("lease_expires_at")
        run_deadline_at = try job.requiredString("run_deadline_at")
        path = try job.optionalString("path", maxLength: .max)
    }
}

extension LeaseResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue { .object(["jobs": .array(jobs.map(\.jsonValue))]) }

    public init(jsonValue: JSONValue) throws(SpoolError) {
        var jobs: [LeasedJob] = []
        for job in try RequestFields(jsonValue, of: "answer").requiredArray("jobs") { jobs.append(try LeasedJob(jsonValue: job)) }
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

extension LeaseReport: JSONValueEncodable {
    public var jsonValue: JSONValue { .object(members) }

    /// Its members, to which the request that carries it adds its own.
    var members: [String: JSONValue] {
        var members: [String: JSONValue] = ["lease_token": .string(lease_token)]
        members.set("info", info)
        members.set("logs", logs)
        return members
    }
}

extension HeartbeatRequest: JSONValueEncodable {
    public var jsonValue: JSONValue {
        var members = report.members
        if let lease_seconds { members["lease_seconds"] = .double(lease_seconds) }
        return .object(members)
    }
}

extension HeartbeatResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue {
        .object(["lease_expires_at": .string(lease_expires_at), "stop": .bool(stop), "stop_reason": JSONValue(stop_reason?.rawValue)])
    }

    public init(jsonValue: JSONValue) throws(SpoolError) {
        let answer = try RequestFields(jsonValue, of: "answer")
        lease_expires_at = try answer.requiredString("lease_expires_at")
        stop_reason = try answer.optionalRawValue("stop_reason", as: StopReason.self)
        stop = try answer.requiredBool("stop")
    }
}

extension CompleteRequest: JSONValueEncodable {
    public var jsonValue: JSONValue { .object(report.members.merging(["outputs": .object(outputs)]) { $1 }) }
}

extension FailRequest: JSONValueEncodable {
    public var jsonValue: JSONValue {
        .object(report.members.merging(["error": .string(error), "retryable": .bool(retryable)]) { $1 })
    }
}

extension JobWriteResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue {
        .object(["request_id": .string(request_id), "status": .string(status.rawValue), "retries": .int(Int64(retries))])
    }

    public init(jsonValue: JSONValue) throws(SpoolError) {
        let answer = try RequestFields(jsonValue, of: "answer")
        guard let status = try answer.optionalRawValue("status", as: JobStatus.self) else {
            throw .invalidRequest("'status' is required.", code: "missing_field", param: "status")
        }
        self.init(request_id: try answer.requiredString("request_id"), status: status, retries: try answer.requiredInt32("retries"))
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

    public init(jsonValue: JSONValue) throws(SpoolError) {
        let error = try RequestFields(jsonValue, of: "error")
        self.init(
            code: try error.requiredString("code"), message: try error.requiredString("message"),
            http_status: Int(try error.requiredInt32("http_status")))
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

    public init(jsonValue: JSONValue) throws(SpoolError) {
        let result = try RequestFields(jsonValue, of: "results[]")
        self.init(
            request_id: try result.requiredString("request_id"), status: try result.optionalRawValue("status", as: JobStatus.self),
            retries: try result.optionalInt32("retries"),
            error: try result.optionalObject("error").map { value throws(SpoolError) in try CompleteManyItemError(jsonValue: .object(value)) })
    }
}

extension CompleteManyResponse: JSONValueEncodable, JSONValueDecodable {
    public var jsonValue: JSONValue { .object(["results": .array(results.map(\.jsonValue))]) }

    public init(jsonValue: JSONValue) throws(SpoolError) {
        var results: [CompleteManyResult] = []
        for result in try RequestFields(jsonValue, of: "answer").requiredArray("results") {
            results.append(try CompleteManyResult(jsonValue: result))
        }
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
    // Optional members are null rather than left out, so every field is always present; `logs` only when asked for.
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
