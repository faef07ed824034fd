import Foundation

// Shapes of RunPod's serverless APIs (`runpod` 1.12.0) under /v2/{endpoint_id}: the client's
// (`runpod.Endpoint`) and the worker's (`runpod.serverless.start`). An endpoint id is a model.

/// RunPod's status words.
public enum RunPodStatus: String, Sendable, Codable {
    case inQueue = "IN_QUEUE"
    case inProgress = "IN_PROGRESS"
    case completed = "COMPLETED"
    case failed = "FAILED"
    case cancelled = "CANCELLED"
    case timedOut = "TIMED_OUT"

    /// A job's status in RunPod's words: a failure by a time limit (the run time, or the start
    /// deadline of `policy.ttl`) is TIMED_OUT.
    public init(_ status: JobStatus, errorType: String?) {
        switch status {
        case .pending: self = .inQueue
        case .running: self = .inProgress
        case .done: self = .completed
        case .canceled: self = .cancelled
        case .failed: self = ["runner_timeout", "request_timeout"].contains(errorType ?? "") ? .timedOut : .failed
        }
    }
}

/// `POST /v2/{endpoint_id}/run` and `/runsync`: `{"input": {…}, "webhook"?, "policy"?}`.
public struct RunPodRunRequest: Sendable, Equatable {
    public var input: [String: JSONValue]
    public var webhook: String?
    /// `policy.executionTimeout` (ms): the job's maximum run time.
    public var executionTimeoutSeconds: Double?
    /// `policy.ttl` (ms): how long the job may wait to start.
    public var ttlSeconds: Double?
    /// `policy.lowPriority`: the job waits behind the endpoint's other jobs.
    public var lowPriority: Bool

    /// The priority of a `lowPriority` job; others have Spool's default, 0.
    public static let lowPriorityValue: Int32 = -1
    /// The longest time limit accepted, in milliseconds (a week).
    public static let maxLimitMilliseconds: Double = 7 * 24 * 3600 * 1000

    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        self.input = try body.requiredObject("input")
        self.webhook = try body.optionalString("webhook", maxLength: 2048)
        let policy = try RequestFields(.object(try body.optionalObject("policy") ?? [:]))
        for name in policy.members.keys where !["executionTimeout", "ttl", "lowPriority"].contains(name) {
            throw .invalidRequest(
                "'policy.\(name)' is not supported: a policy may set executionTimeout, ttl and lowPriority.", code: "invalid_field",
                param: "policy.\(name)")
        }
        self.executionTimeoutSeconds = try Self.milliseconds(policy, "executionTimeout").map { $0 / 1000 }
        self.ttlSeconds = try Self.milliseconds(policy, "ttl").map { $0 / 1000 }
        self.lowPriority = try policy.optionalBool("lowPriority") ?? false
    }

    /// A whole number of milliseconds between one second and a week.
    static func milliseconds(_ policy: RequestFields, _ name: String) throws(SpoolError) -> Double? {
        guard let value = policy.members[name], value != .null else { return nil }
        let milliseconds: Double
        switch value {
        case .int(let int): milliseconds = Double(int)
        case .double(let double): milliseconds = double
        default:
            throw .invalidRequest(
                "'policy.\(name)' must be a number of milliseconds, not \(value.typeName).", code: "invalid_type", param: "policy.\(name)")
        }
        guard (1000...maxLimitMilliseconds).contains(milliseconds) else {
            throw .invalidRequest(
                "'policy.\(name)' must be between 1000 and \(Int(maxLimitMilliseconds)) milliseconds, got \(milliseconds.formatted()).",
                code: "invalid_field", param: "policy.\(name)")
        }
        return milliseconds
    }

    /// The job to store for `endpoint`.
    public func submitRequest(endpoint: String) -> SubmitRequest {
        var submit = SubmitRequest(
            model: endpoint, payload: input, priority: lowPriority ? Self.lowPriorityValue : 0, startTimeoutSeconds: ttlSeconds,
            webhookURL: webhook, webhookFormat: .runpod)
        submit.maxRunSeconds = executionTimeoutSeconds
        return submit
    }
}

/// What a RunPod worker POSTs to its job-done URL.
public enum RunPodDone: Sendable, Equatable {
    /// `{"status": "IN_PROGRESS", "output": …}` from `progress_update`: an emit.
    case progress(JSONValue)
    /// `{"error": …}` (with or without output): the handler failed.
    case failure(String)
    /// `{"output": …}`, or nothing (a handler that returned nothing).
    case output(JSONValue?)

    public init(json: JSONValue) throws(SpoolError) {
        guard let members = json.objectValue else {
            throw .invalidRequest("A job-done body must be a JSON object, not \(json.typeName).", code: "invalid_body")
        }
        if members["status"]?.stringValue == RunPodStatus.inProgress.rawValue {
            self = .progress(members["output"] ?? .null)
        } else if let error = members["error"], error != .null {
            // An exception's error is a JSON string (type, message, traceback); anything else is kept as
            // JSON text; either is cut as a Spool worker's fail error is.
            self = .failure(JobLogLine.truncated(error.stringValue ?? error.jsonText))
        } else {
            self = .output(members["output"])
        }
    }
}

/// `GET /v2/{endpoint_id}/status/{id}`, also the body of a RunPod webhook.
public struct RunPodJobStatus: Sendable, Equatable {
    public var id: String
    public var status: RunPodStatus
    /// Milliseconds the job waited before it started (so far, while it waits).
    public var delayTime: Int64?
    /// Milliseconds it ran (so far, while it runs).
    public var executionTime: Int64?
    public var output: JSONValue?
    public var error: String?
    public var retries: Int32

    public init(
        id: String, status: RunPodStatus, delayTime: Int64?, executionTime: Int64?, output: JSONValue?, error: String?, retries: Int32
    ) {
        self.id = id
        self.status = status
        self.delayTime = delayTime
        self.executionTime = executionTime
        self.output = output
        self.error = error
        self.retries = retries
    }

    public var jsonValue: JSONValue {
        var members: [String: JSONValue] = ["id": .string(id), "status": .string(status.rawValue)]
        if let delayTime { members["delayTime"] = .int(delayTime) }
        if let executionTime { members["executionTime"] = .int(executionTime) }
        if let output { members["output"] = output }
        if let error { members["error"] = .string(error) }
        if retries > 0 { members["retries"] = .int(Int64(retries)) }
        return .object(members)
    }

    /// A job's outputs as RunPod's `output`: what a RunPod worker returned (stored as
    /// `{"output": …}`), or the whole outputs object of a job another worker completed.
    public static func output(of outputs: [String: JSONValue]?) -> JSONValue? {
        guard let outputs else { return nil }
        if outputs.count == 1, let output = outputs["output"] { return output }
        return .object(outputs)
    }
}
