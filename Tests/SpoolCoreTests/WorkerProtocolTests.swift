import Foundation
import SpoolCore
import Testing

@Suite struct WorkerProtocolValidationTests {
    @Test func leaseDefaults() throws {
        let lease = try LeaseRequest(json: JSONValue.parse(#"{"worker_id":"w1","models":["a/b"]}"#))
        #expect(lease == LeaseRequest(worker_id: "w1", models: ["a/b"], max_jobs: 1, wait_seconds: 0, lease_seconds: 30))
    }

    @Test(arguments: [
        (#"{"models":["m"]}"#, "worker_id"),
        (#"{"worker_id":"w"}"#, "models"),
        (#"{"worker_id":"w","models":[]}"#, "models"),
        (#"{"worker_id":"w","models":[""]}"#, "models"),
        (#"{"worker_id":"w","models":"m"}"#, "models"),
        (#"{"worker_id":"w","models":["m"],"max_jobs":0}"#, "max_jobs"),
        (#"{"worker_id":"w","models":["m"],"max_jobs":101}"#, "max_jobs"),
        (#"{"worker_id":"w","models":["m"],"wait_seconds":31}"#, "wait_seconds"),
        (#"{"worker_id":"w","models":["m"],"wait_seconds":-1}"#, "wait_seconds"),
        (#"{"worker_id":"w","models":["m"],"lease_seconds":0.5}"#, "lease_seconds"),
        (#"{"worker_id":"w","models":["m"],"lease_seconds":"30"}"#, "lease_seconds"),
    ])
    func leaseRefusals(body: String, param: String) throws {
        let json = try JSONValue.parse(body)
        let error = refusal { _ = try LeaseRequest(json: json) }
        #expect(error?.httpStatus == 400)
        #expect(error?.param == param)
    }

    @Test func heartbeatLogLinesAreStringsOrObjects() throws {
        let beat = try HeartbeatRequest(
            json: JSONValue.parse(
                #"{"lease_token":"t","info":{"progress":0.5},"logs":["plain",{"message":"warned","level":"WARNING","source":"model","timestamp":"2026-01-02T03:04:05.678Z"}]}"#
            ))
        #expect(beat.report.info == ["progress": 0.5])
        #expect(beat.report.logs?.map(\.message) == ["plain", "warned"])
        #expect(beat.report.logs?.map(\.level) == ["info", "warning"])
        #expect(beat.report.logs?[1].source == "model")
        #expect(beat.report.logs?[1].timestamp == "2026-01-02T03:04:05.678Z")
    }

    @Test(arguments: [
        (#"{"info":{}}"#, "lease_token"),
        (#"{"lease_token":"t","info":[1]}"#, "info"),
        (#"{"lease_token":"t","logs":"one"}"#, "logs"),
        (#"{"lease_token":"t","logs":[5]}"#, "logs"),
        (#"{"lease_token":"t","logs":[{"level":"info"}]}"#, "logs"),
        (#"{"lease_token":"t","logs":[{"message":"m","level":"loud"}]}"#, "logs"),
        (#"{"lease_token":"t","logs":[{"message":"m","timestamp":"yesterday"}]}"#, "logs"),
    ])
    func heartbeatRefusals(body: String, param: String) throws {
        let json = try JSONValue.parse(body)
        let error = refusal { _ = try HeartbeatRequest(json: json) }
        #expect(error?.httpStatus == 400)
        #expect(error?.param == param)
    }

    @Test func failNeedsAnErrorAndDefaultsToNotRetryable() throws {
        let fail = try FailRequest(json: JSONValue.parse(#"{"lease_token":"t","error":"out of memory"}"#))
        #expect(fail.retryable == false)
        let error = refusal { _ = try FailRequest(json: JSONValue.parse(#"{"lease_token":"t"}"#)) }
        #expect(error?.param == "error")
        let retryable = refusal { _ = try FailRequest(json: JSONValue.parse(#"{"lease_token":"t","error":"x","retryable":"yes"}"#)) }
        #expect(retryable?.param == "retryable")
    }

    @Test func tooManyLogLinesAreRefused() throws {
        let lines = JSONValue.array(Array(repeating: "x", count: WorkerProtocolLimits.maxLogLinesPerWrite + 1))
        let error = refusal { _ = try HeartbeatRequest(json: ["lease_token": "t", "logs": lines]) }
        #expect(error?.param == "logs")
    }

    @Test func heartbeatAnswerAlwaysNamesTheStop() throws {
        let running = HeartbeatResponse(lease_expires_at: Date(timeIntervalSince1970: 0), stop_reason: nil)
        let json = running.jsonValue
        #expect(json == ["lease_expires_at": "1970-01-01T00:00:00.000Z", "stop": false, "stop_reason": nil])
        let stopped = HeartbeatResponse(lease_expires_at: Date(timeIntervalSince1970: 0), stop_reason: .maxRunTime)
        #expect(stopped.jsonValue.objectValue?["stop_reason"] == "max_run_time")
    }

    @Test func nulCharactersAreFound() throws {
        #expect(JSONValue.object(["a": ["b": .string("x\u{0}y")]]).containsNUL)
        #expect(JSONValue.object(["k\u{0}": 1]).containsNUL)
        #expect(!JSONValue.object(["a": ["b", 1, nil]]).containsNUL)
    }
}
