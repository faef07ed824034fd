import Foundation
import SpoolCore
import Testing

@Suite struct SubmitRequestValidationTests {
    private func parse(_ text: String) throws -> SubmitRequest {
        try SubmitRequest(json: JSONValue.parse(text))
    }

    private func refusal(_ text: String) -> SpoolError? { SpoolCoreTests.refusal { _ = try parse(text) } }

    @Test func acceptsAFullRequest() throws {
        let request = try parse(#"{"model":"video/x","payload":{"prompt":"a cat","n":2},"info":{"user":"u1"},"priority":7}"#)
        #expect(request == SubmitRequest(model: "video/x", payload: ["prompt": "a cat", "n": 2], info: ["user": "u1"], priority: 7))
    }

    @Test func defaultsInfoAndPriority() throws {
        let request = try parse(#"{"model":"m","payload":{}}"#)
        #expect(request.info == [:])
        #expect(request.priority == 0)
    }

    @Test(arguments: [
        (#"[1,2]"#, "invalid_body", nil as String?),
        (#"{"payload":{}}"#, "missing_field", "model"),
        (#"{"model":"","payload":{}}"#, "invalid_field", "model"),
        (#"{"model":5,"payload":{}}"#, "invalid_type", "model"),
        (#"{"model":"m"}"#, "missing_field", "payload"),
        (#"{"model":"m","payload":[1]}"#, "invalid_type", "payload"),
        (#"{"model":"m","payload":"text"}"#, "invalid_type", "payload"),
        (#"{"model":"m","payload":{},"info":3}"#, "invalid_type", "info"),
        (#"{"model":"m","payload":{},"priority":"high"}"#, "invalid_type", "priority"),
        (#"{"model":"m","payload":{},"priority":1.5}"#, "invalid_type", "priority"),
        (#"{"model":"m","payload":{},"priority":99999999999}"#, "invalid_field", "priority"),
    ])
    func refusesBadRequests(body: String, code: String, param: String?) {
        let error = refusal(body)
        #expect(error?.httpStatus == 400)
        #expect(error?.code == code)
        #expect(error?.param == param)
        #expect(error?.type == "invalid_request_error")
    }

    @Test func refusesAnOverlongModelName() {
        let error = refusal(#"{"model":"\#(String(repeating: "m", count: 300))","payload":{}}"#)
        #expect(error?.param == "model")
    }
}

@Suite struct WireShapeTests {
    @Test func errorBodyHasTogethersQueueErrorShape() throws {
        let body = SpoolError.notFound("No job.", code: "job_not_found", param: "request_id").body
        #expect(body == ["message": "No job.", "type": "not_found_error", "code": "job_not_found", "param": "request_id"])
        let conflict = SpoolError.conflict("Busy.", code: "job_not_pending", extra: ["status": "running"])
        #expect(conflict.httpStatus == 409)
        #expect(conflict.body.objectValue?["status"] == "running")
        #expect(conflict.body.objectValue?["param"] == .null)
    }

    @Test func statusResponseAlwaysWritesEveryField() throws {
        let response = JobStatusResponse(
            model: "m", request_id: "r", status: .pending, priority: 0, info: [:], inputs: ["a": 1], outputs: nil, error: nil,
            retries: 0, created_at: Date(timeIntervalSince1970: 1_700_000_000.25), claimed_at: nil, done_at: nil)
        let json = try JSONValue.parse(Array(JSONEncoder().encode(response))).objectValue ?? [:]
        #expect(
            Set(json.keys) == [
                "model", "request_id", "status", "priority", "info", "inputs", "outputs", "error", "error_type", "retries", "created_at",
                "claimed_at", "done_at", "warnings", "queue_position", "estimated_wait_seconds", "webhook",
            ])
        #expect(json["outputs"] == .null)
        #expect(json["created_at"] == "2023-11-14T22:13:20.250Z")
    }

    @Test func metricsTotalIsWaitingPlusRunning() {
        #expect(QueueMetricsResponse(messages_waiting: 4, messages_running: 3).total_jobs == 7)
    }

    @Test func jsonRoundTripKeepsIntegersAndNesting() throws {
        let text = #"{"a":[1,2.5,"x",null,true],"b":{"c":-9007199254740993}}"#
        let value = try JSONValue.parse(text)
        #expect(try JSONValue.parse(value.jsonText) == value)
        #expect(value.objectValue?["b"]?.objectValue?["c"] == .int(-9_007_199_254_740_993))
    }
}
