import Foundation
import Testing

@testable import SpoolCore

/// The byte-level JSON reader and writer, and the hand-written conversions of the hot messages.
@Suite struct JSONTests {
    @Test(arguments: [
        #"{"a":[1,-2,3.5,1e3,true,false,null],"b":{"c":"d\"\\\/\n\u00e9\ud83d\ude00"}}"#,
        #"  [ ]  "#, #"{}"#, #""""#, #"-0.25"#, #"9223372036854775807"#, #"1.0"#,
    ])
    func readsWhatFoundationReads(text: String) throws {
        let ours = try JSONValue.parse(text)
        let foundations = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(Self.numbersAsDoubles(ours) == Self.numbersAsDoubles(foundations))
        // And what it writes reads back the same.
        #expect(try JSONValue.parse(ours.jsonText) == ours)
    }

    @Test(arguments: [
        "", "{", "[1,]", #"{"a" 1}"#, "01", "1.", "-", "tru", #""\x""#, "\"\u{01}\"", #""\ud800""#, "[1] 2", "1e",
        String(repeating: "[", count: 600) + String(repeating: "]", count: 600),
    ])
    func refusesWhatIsNotJSON(text: String) {
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(text) }
    }

    @Test func integersStayIntegersAndBigOnesBecomeDoubles() throws {
        #expect(try JSONValue.parse("42") == .int(42))
        #expect(try JSONValue.parse("-9223372036854775808") == .int(.min))
        #expect(try JSONValue.parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try JSONValue.parse("2.5") == .double(2.5))
    }

    @Test func timestampsMatchTheFormatStyle() {
        var generator = SystemRandomNumberGenerator()
        let dates =
            [Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: 1_795_000_000.9995), Date(timeIntervalSince1970: -1.5)]
            + (0..<20000).map { _ in Date(timeIntervalSince1970: Double.random(in: 0..<4_000_000_000, using: &generator)) }
        for date in dates {
            #expect(RFC3339.string(from: date) == RFC3339.formatStyleString(from: date), "\(date.timeIntervalSince1970)")
        }
    }

    /// The worker protocol has one encoding (jsonValue) and one decoding a side: what a worker
    /// writes, the broker's reader takes back to the same value, and the reverse for its answers.
    @Test func workerMessagesRoundTripThroughTheirOneEncoding() throws {
        let line = JobLogLine(message: "hi", level: "stdout", source: "handler", timestamp: Date(timeIntervalSince1970: 1_795_000_000.5))
        let leases = [
            LeaseRequest(worker_id: "w", models: ["a", "b"], max_jobs: 3, wait_seconds: 20, lease_seconds: 30.5, host: "h"),
            LeaseRequest(worker_id: "w", models: ["a"]),
        ]
        for lease in leases { #expect(try LeaseRequest(json: JSONValue.parse(lease.jsonValue.jsonBytes)) == lease) }
        let beats = [
            HeartbeatRequest(LeaseReport(lease_token: "t", info: ["progress": 0.5], logs: [line]), lease_seconds: 60),
            HeartbeatRequest(LeaseReport(lease_token: "t")),
        ]
        for beat in beats { #expect(try HeartbeatRequest(json: JSONValue.parse(beat.jsonValue.jsonBytes)) == beat) }
        let complete = CompleteRequest(LeaseReport(lease_token: "t", info: ["done": true], logs: [JobLogLine(message: "m")]), outputs: ["x": nil])
        #expect(try CompleteRequest(json: JSONValue.parse(complete.jsonValue.jsonBytes)) == complete)
        let fail = FailRequest(LeaseReport(lease_token: "t"), error: "boom", retryable: true)
        #expect(try FailRequest(json: JSONValue.parse(fail.jsonValue.jsonBytes)) == fail)
        let release = ReleaseRequest(lease_token: "t", info: ["a": 1])
        #expect(try ReleaseRequest(json: JSONValue.parse(release.jsonValue.jsonBytes)) == release)
        let many = CompleteManyRequest(completions: [CompleteManyItem(request_id: "r", complete: complete)])
        #expect(try CompleteManyRequest(json: JSONValue.parse(many.jsonValue.jsonBytes)) == many)
        let written = JobWriteResponse(request_id: "r", status: .done, retries: 1)
        #expect(try JobWriteResponse(jsonValue: JSONValue.parse(written.jsonValue.jsonBytes)) == written)
    }

    /// The queue API's answers are written one way (jsonValue, which their Codable encoding writes too),
    /// and the client SDK's Codable decoding reads back exactly what the broker wrote.
    @Test func theClientReadsTheQueueAnswersTheBrokerWrites() throws {
        let line = JobLogLine(message: "hi", level: "stdout", source: "handler", timestamp: Date())
        let statuses = [
            JobStatusResponse(
                model: "m", request_id: "r", status: .pending, priority: 1, info: [:], inputs: ["a": "b"], outputs: nil, error: nil,
                retries: 0, created_at: Date(), claimed_at: nil, done_at: nil, warnings: ["w"], queue_position: 3,
                webhook: WebhookStatus(webhook_id: nil, url: "https://x", state: "waiting")),
            JobStatusResponse(
                model: "m", request_id: "r", status: .done, priority: 1, info: ["i": 1], inputs: [:], outputs: ["o": 1], error: nil,
                retries: 2, created_at: Date(), claimed_at: Date(), done_at: Date(), estimated_wait_seconds: 1.5, logs: [line],
                webhook: WebhookStatus(
                    webhook_id: "msg_1", url: "https://x", state: "failed", attempts: 3, last_status_code: 500, last_error: "boom",
                    last_attempt_at: Date(), next_attempt_at: nil)),
        ]
        for status in statuses {
            #expect(try JSONDecoder().decode(JobStatusResponse.self, from: Data(status.jsonValue.jsonBytes)) == status)
            // Every member is present, the optional ones as null; logs only when asked for.
            let members = status.jsonValue.objectValue ?? [:]
            #expect(members["error"] == .null && members["done_at"] != nil && (members["logs"] == nil) == (status.logs == nil))
            #expect(try JSONValue.parse(JSONEncoder().encode(status)) == status.jsonValue)
        }
        let submitted = SubmitResponse(requestId: "r")
        #expect(try JSONDecoder().decode(SubmitResponse.self, from: Data(submitted.jsonValue.jsonBytes)) == submitted)
    }

    @Test func handWrittenDecodingsReadWhatTheBrokerWrites() throws {
        let job = LeasedJob(
            request_id: "r", model: "m", lease_token: "t", attempt: 1, priority: 0, payload: ["a": 1], info: [:],
            lease_expires_at: Date(), run_deadline_at: Date(), path: "/sub")
        let lease = LeaseResponse(jobs: [job])
        #expect(try LeaseResponse(jsonValue: JSONValue.parse(lease.jsonValue.jsonBytes)) == lease)
        let beat = HeartbeatResponse(lease_expires_at: Date(), stop_reason: .canceled)
        #expect(try HeartbeatResponse(jsonValue: JSONValue.parse(beat.jsonValue.jsonBytes)) == beat)
        let batch = CompleteManyResponse(results: [
            CompleteManyResult(request_id: "a", status: .failed, retries: 3, refusal: nil),
            CompleteManyResult(request_id: "b", refusal: SpoolError.notFound("no", code: "job_not_found")),
        ])
        #expect(try CompleteManyResponse(jsonValue: JSONValue.parse(batch.jsonValue.jsonBytes)) == batch)
        #expect(throws: SpoolError.self) { try LeaseResponse(jsonValue: ["jobs": [["request_id": 1]]]) }
        #expect(throws: SpoolError.self) { try JobWriteResponse(jsonValue: ["request_id": "r", "status": "lost", "retries": 0]) }
    }

    /// Codable writes 30.0 as 30; the hand-written encodings keep it a double. Both mean the same number.
    static func numbersAsDoubles(_ value: JSONValue) -> JSONValue {
        switch value {
        case .int(let int): .double(Double(int))
        case .array(let elements): .array(elements.map(numbersAsDoubles))
        case .object(let members): .object(members.mapValues(numbersAsDoubles))
        default: value
        }
    }

    /// Text from clients is read the way PostgreSQL will store it, or refused: invalid UTF-8 is not
    /// repaired into U+FFFD, an integer beyond 64 bits does not silently become a double.
    @Test func strictParsingRefusesWhatTheDatabaseWouldChange() throws {
        let invalid: [UInt8] = Array(#"{"a": ""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(invalid, strict: true) }
        #expect(try JSONValue.parse(invalid).objectValue?["a"]?.stringValue?.contains("\u{FFFD}") == true, "lenient reading repairs it")
        let escaped = Array(#"{"a": "\n"#.utf8) + [0xFF] + Array(#""}"#.utf8)
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(escaped, strict: true) }
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(Array("[18446744073709551616]".utf8), strict: true) }
        #expect(throws: JSONSyntaxError.self) { try JSONValue.parse(Array("[-9223372036854775809]".utf8), strict: true) }
        #expect(
            try JSONValue.parse(Array("[9223372036854775807, -9223372036854775808, 1.5e300, \"é\"]".utf8), strict: true)
                == [.int(.max), .int(.min), .double(1.5e300), "é"])
    }

    /// Log timestamps are checked as PostgreSQL's timestamptz reads them.
    @Test func timestampsPostgreSQLRefusesAreRefused() {
        #expect(RFC3339.normalized("2026-01-01T00:00:00Z") == "2026-01-01T00:00:00Z")
        #expect(RFC3339.normalized("2026-01-01t00:00:00.123456z") == "2026-01-01T00:00:00.123456Z")
        #expect(RFC3339.normalized("2024-02-29 23:59:59+15:59") == "2024-02-29T23:59:59+15:59")
        for refused in [
            "2026-01-01T00:00:00+17:00", "2026-01-01T00:00:00+16:00", "0000-01-01T00:00:00Z", "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z", "2026-01-01T24:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00.1234567890Z", "yesterday", "",
        ] {
            #expect(RFC3339.normalized(refused) == nil, "\(refused)")
        }
    }
}
