import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import SpoolCore
import Testing

@testable import SpoolBroker
@testable import SpoolStore

/// Clients and workers as a hostile or merely slow fleet has them: stalled uploads, a bad item in
/// a shared statement, hung-up long-polls, a browser on the same machine. Each test reproduces a
/// way one of them used to stall, poison or mislead a broker.
@Suite(.serialized) struct HostileClientTests {
    static let key = "hostile-key-\(UUID().uuidString)"
    static var auth: [(String, String)] { [("Authorization", "Bearer \(key)")] }

    /// An in-process broker that takes this suite's key, configured further by `configure`.
    static func withKeyedBroker<Result: Sendable>(
        _ configure: (inout BrokerConfiguration) -> Void = { _ in }, _ body: @Sendable (BrokerClient) async throws -> Result
    ) async throws -> Result {
        try await withTestBroker(
            {
                $0.apiKeys = [key]
                configure(&$0)
            }, body)
    }

    /// Files this test's uploads made, by the name prefix it gave them.
    static func uploads(named prefix: String) async throws -> (held: Int, rows: Int, chunks: Int) {
        try await TestDatabase.withStore { store in
            let row = try await store.client.query(
                """
                SELECT count(*) FILTER (WHERE upload_holder IS NOT NULL), count(*),
                       (SELECT count(*) FROM file_chunks c JOIN files f ON f.id = c.file_id WHERE f.filename LIKE \(prefix + "%"))
                FROM files WHERE filename LIKE \(prefix + "%")
                """, logger: TestDatabase.logger
            ).collect().first?.decode((Int, Int, Int).self)
            return row ?? (0, 0, 0)
        }
    }

    /// Together's flow up to its PUT: a file waiting for its content, and where to PUT it.
    static func startTogetherUpload(_ baseURL: String, name: String, headers: [(String, String)]) async throws -> String {
        let boundary = "b-\(UUID().uuidString)"
        let form =
            "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n"
            + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file_name\"\r\n\r\n\(name)\r\n--\(boundary)--\r\n"
        var request = HTTPClientRequest(url: baseURL + "/v1/files")
        request.method = .POST
        for (name, value) in headers + [("Content-Type", "multipart/form-data; boundary=\(boundary)")] {
            request.headers.add(name: name, value: value)
        }
        request.body = .bytes(ByteBuffer(string: form))
        let created = try await SlowRequest.http.execute(request, timeout: .seconds(30))
        guard created.status == .found, let location = created.headers.first(name: "Location") else {
            throw TestFailure("create failed: \(created.status)")
        }
        return location
    }

    static func seconds(_ duration: Duration) -> String {
        let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return String(format: "%.1f ms", value * 1000)
    }

    /// Thirty uploads that start and stop sending (ten of each kind) held every pooled connection
    /// before: claims, completes and /readyz hung. Now nothing waits on them.
    @Test func thirtyStalledUploadsLeaveTheBrokerResponsive() async throws {
        let broker = try await BrokerProcess.start(
            databaseURL: TestDatabase.url(database: TestDatabase.migrated()), arguments: ["--api-key", Self.key])
        let prefix = "stall-\(UUID().uuidString.prefix(8))"
        let model = uniqueModel("stall")
        var stalled: [SlowRequest] = []
        for index in 0..<10 {
            let boundary = "b-\(UUID().uuidString)"
            let head =
                "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n"
                + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(prefix)-post-\(index)\"\r\n\r\n{\"custom_id\""
            stalled.append(
                SlowRequest(
                    .POST, broker.baseURL + "/v1/files", headers: Self.auth + [("Content-Type", "multipart/form-data; boundary=\(boundary)")],
                    first: ByteBuffer(string: head), length: 10 << 20))
        }
        for index in 0..<10 {
            let location = try await Self.startTogetherUpload(broker.baseURL, name: "\(prefix)-put-\(index)", headers: Self.auth)
            stalled.append(SlowRequest(.PUT, location, first: ByteBuffer(repeating: UInt8(ascii: "x"), count: 1000), length: 10 << 20))
        }
        for index in 0..<10 {
            _ = try await HTTP.submit(broker: broker, model: model, headers: Self.auth)
            let lease = try await HTTP.post(broker.baseURL + "/v1/worker/lease", ["worker_id": "w", "models": [.string(model)]], headers: Self.auth)
            let job = try #require(lease["jobs"]?.arrayValue?.first?.objectValue)
            let url =
                broker.baseURL
                + "/v1/worker/jobs/\(job["request_id"]!.stringValue!)/files?name=\(prefix)-worker-\(index)&lease_token=\(job["lease_token"]!.stringValue!)"
            stalled.append(SlowRequest(.POST, url, headers: Self.auth, first: ByteBuffer(repeating: 0, count: 1000), length: 10 << 20))
        }
        try await eventually("the broker holds all 30 uploads") { try await Self.uploads(named: prefix).held == 30 }

        // The pool is the broker's (20 connections, fewer than the uploads): it must still serve.
        let readyStart = ContinuousClock.now
        let ready = try await HTTP.get(broker.baseURL + "/readyz")
        let readyTime = ContinuousClock.now - readyStart
        #expect(ready.status == 200, "\(ready.json)")
        let cycleStart = ContinuousClock.now
        let id = try await HTTP.submit(broker: broker, model: model, headers: Self.auth)
        let lease = try await HTTP.post(
            broker.baseURL + "/v1/worker/lease", ["worker_id": "w2", "models": [.string(model)], "max_jobs": 100], headers: Self.auth)
        let job = try #require(lease["jobs"]?.arrayValue?.compactMap(\.objectValue).first { $0["request_id"]?.stringValue == id })
        let done = try await HTTP.post(
            broker.baseURL + "/v1/worker/jobs/\(id)/complete", ["lease_token": job["lease_token"]!, "outputs": [:]], headers: Self.auth)
        let cycleTime = ContinuousClock.now - cycleStart
        #expect(done.status == 200 && done["status"] == "done", "\(done.json)")
        print("with 30 stalled uploads: /readyz \(Self.seconds(readyTime)), submit → lease → complete \(Self.seconds(cycleTime))")

        // Clients that hang up leave nothing held: new files go, Together's files wait for a good PUT.
        for request in stalled { request.hangUp() }
        var last = (held: -1, rows: -1, chunks: -1)
        do {
            try await eventually("every upload is abandoned") {
                last = try await Self.uploads(named: prefix)
                return last.held == 0 && last.rows == 10 && last.chunks == 0
            }
        } catch {
            Issue.record("uploads held, files, chunks at the end: \(last); the broker said: \(broker.process.output.suffix(4000))")
            throw error
        }
        #expect(await broker.process.stop() == 0)
    }

    /// A connection that sends nothing for the idle timeout is closed mid-upload, and one that hangs
    /// up mid-body (its Content-Length not reached) stores nothing: the file still waits for a good upload.
    @Test func aStalledOrCutOffUploadKeepsNothingAndFreesTheFile() async throws {
        try await Self.withKeyedBroker({ $0.idleTimeoutSeconds = 1 }) { broker in
            let prefix = "idle-\(UUID().uuidString.prefix(8))"
            let content = String(repeating: "{\"custom_id\": \"a\", \"body\": {}}\n", count: 32)

            let stalledAt = try await Self.startTogetherUpload(broker.baseURL, name: "\(prefix)-stalled", headers: Self.auth)
            // A raw socket: the broker's close is seen as it happens, not through an HTTP client's request state.
            let stalled = try await RawRequest("PUT", stalledAt, headers: Self.auth, first: String(content.prefix(100)), length: content.utf8.count)
            defer { stalled.close() }
            // Generous: this broker shares the test process with the whole suite; without the idle timeout it never ends.
            #expect(await stalled.isClosed(within: .seconds(60)), "the broker closes a connection idle mid-body")
            #expect(stalled.answer.isEmpty, "a stalled upload was answered: \(stalled.answer)")

            let cutAt = try await Self.startTogetherUpload(broker.baseURL, name: "\(prefix)-cut", headers: Self.auth)
            let cut = SlowRequest(.PUT, cutAt, first: ByteBuffer(string: String(content.prefix(200))), length: content.utf8.count)
            try await eventually("the cut-off upload holds its file") { try await Self.uploads(named: prefix).held == 1 }
            cut.hangUp()
            try await eventually("both uploads are abandoned") {
                let uploads = try await Self.uploads(named: prefix)
                return uploads.held == 0 && uploads.chunks == 0 && uploads.rows == 2
            }

            // Both files take a whole upload afterwards, at once (no wait for a dead holder).
            for location in [stalledAt, cutAt] {
                let whole = SlowRequest(.PUT, location, first: ByteBuffer(string: content), length: content.utf8.count)
                whole.finish()
                let answer = try await whole.result.get()
                #expect(answer.status == 200 && answer["bytes"] == .int(Int64(content.utf8.count)), "\(answer.status) \(answer.json)")
            }
        }
    }

    /// One key cannot hold more uploads at once than its cap: the next is a 429 with Retry-After.
    @Test func uploadsInProgressPerKeyAreCapped() async throws {
        try await Self.withKeyedBroker({ $0.maxUploadsPerKey = 2 }) { broker in
            let prefix = "cap-\(UUID().uuidString.prefix(8))"
            let boundary = "b-\(UUID().uuidString)"
            let headers = Self.auth + [("Content-Type", "multipart/form-data; boundary=\(boundary)")]
            func stall(_ name: String) -> SlowRequest {
                let head =
                    "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n"
                    + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(name)\"\r\n\r\nx"
                return SlowRequest(.POST, broker.baseURL + "/v1/files", headers: headers, first: ByteBuffer(string: head), length: 1 << 20)
            }
            func whole(_ name: String) async throws -> Answer {
                let request = SlowRequest(
                    .POST, broker.baseURL + "/v1/files", headers: headers,
                    first: ByteBuffer(string: multipartBody(boundary: boundary, filename: name, content: "{}")), length: nil)
                request.finish()
                return try await request.result.get()
            }
            let stalled = [stall("\(prefix)-a"), stall("\(prefix)-b")]
            try await eventually("both uploads are under way") { try await Self.uploads(named: prefix).held == 2 }
            let refused = try await whole("\(prefix)-c")
            #expect(refused.status == 429 && refused["code"] == "too_many_uploads", "\(refused.status) \(refused.json)")
            #expect(refused.headers[.retryAfter] != nil)
            stalled[0].hangUp()
            try await eventually("a slot is free again") { try await whole("\(prefix)-d").status == 200 }
            stalled[1].hangUp()
        }
    }
}

/// A bad item in a statement that many senders share fails only its sender.
extension HostileClientTests {
    /// Foundation reads `+17:00` as a UTC offset and PostgreSQL refuses it: one worker's log line
    /// with it used to fail every complete of its group with a 500, so honest jobs ran again.
    @Test func aLogTimestampPostgreSQLRefusesFailsOnlyItsSender() async throws {
        try await Self.withKeyedBroker { client in
            let broker = client.withKey(Self.key)
            let model = uniqueModel("poison")
            for _ in 0..<24 { _ = try await broker.submit(model: model) }
            let jobs = try await broker.lease(models: [model], maxJobs: 24)
            #expect(jobs.count == 24)
            let answers = try await withThrowingTaskGroup(of: (Int, Answer).self) { group in
                for (index, job) in jobs.enumerated() {
                    let timestamp = index == 7 ? "2026-01-01T00:00:00+17:00" : "2026-01-01T00:00:00.123456+02:00"
                    group.addTask {
                        (
                            index,
                            try await broker.write(
                                "complete", job: job,
                                ["outputs": ["i": .int(Int64(index))], "logs": [["message": "done", "timestamp": .string(timestamp)]]])
                        )
                    }
                }
                var answers: [Int: Answer] = [:]
                for try await (index, answer) in group { answers[index] = answer }
                return answers
            }
            #expect(answers[7]?.status == 400 && answers[7]?["param"] == "logs", "\(String(describing: answers[7]?.json))")
            for (index, answer) in answers where index != 7 {
                #expect(answer.status == 200 && answer["status"] == "done", "job \(index): \(answer.status) \(answer.json)")
            }

            // The batched route judges each completion alone too.
            let more = try await (0..<3).asyncMap { _ in try await broker.submit(model: model) }
            let leased = try await broker.lease(models: [model], maxJobs: 3)
            #expect(leased.count == more.count)
            let items: [JSONValue] = leased.enumerated().map { index, job in
                [
                    "request_id": job.objectValue!["request_id"]!, "lease_token": job.objectValue!["lease_token"]!, "outputs": [:],
                    "logs": [["message": "x", "timestamp": index == 1 ? "2026-02-30T00:00:00Z" : "2026-01-01T00:00:00Z"]],
                ]
            }
            let batch = try await broker.post("/v1/worker/complete", ["completions": .array(items)])
            let results = (batch["results"]?.arrayValue ?? []).compactMap(\.objectValue)
            #expect(batch.status == 200 && results.count == 3, "\(batch.json)")
            #expect(results[0]["status"] == "done" && results[2]["status"] == "done", "\(results)")
            #expect(results[1]["error"]?.objectValue?["http_status"] == 400, "\(results)")
        }
    }

    /// What the database would store differently than sent is refused with a 400, and nothing is stored:
    /// integers beyond 64 bits (they became doubles), invalid UTF-8 (it became U+FFFD), NUL in form fields and names.
    @Test func textAndNumbersTheDatabaseWouldChangeAreRefused() async throws {
        try await Self.withKeyedBroker { client in
            let broker = client.withKey(Self.key)
            let model = uniqueModel("strict")
            let bigInteger = try await broker.call(
                .post, "/v1/queue/submit", body: #"{"model": "\#(model)", "payload": {"seed": 123456789012345678901}}"#)
            #expect(bigInteger.status == 400 && bigInteger["code"] == "invalid_json", "\(bigInteger.json)")
            #expect(bigInteger["message"]?.stringValue?.contains("64 bits") == true)
            let fits = try await broker.call(.post, "/v1/queue/submit", body: #"{"model": "\#(model)", "payload": {"seed": 9223372036854775807}}"#)
            #expect(fits.status == 200)

            var invalid = ByteBuffer(string: #"{"model": "\#(model)", "payload": {"prompt": ""#)
            invalid.writeBytes([0xC3, 0x28, 0xFF])
            invalid.writeString(#""}}"#)
            let badUTF8 = try await client.client.executeRequest(
                uri: "/v1/queue/submit", method: .post, headers: [.authorization: "Bearer \(Self.key)", .contentType: "application/json"],
                body: invalid)
            #expect(badUTF8.status.code == 400, "\(String(buffer: badUTF8.body))")
            #expect(String(buffer: badUTF8.body).contains("UTF-8"))
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 1, "only the valid submit is stored")

            let boundary = "b-\(UUID().uuidString)"
            let nulField = "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\u{0}-api\r\n--\(boundary)--\r\n"
            let form = try await client.client.executeRequest(
                uri: "/v1/files", method: .post,
                headers: [.authorization: "Bearer \(Self.key)", .contentType: "multipart/form-data; boundary=\(boundary)"],
                body: ByteBuffer(string: nulField))
            #expect(form.status.code == 400, "\(String(buffer: form.body))")

            _ = try await broker.submit(model: model)
            let job = try #require(try await broker.lease(models: [model]).first?.objectValue)
            let upload = try await client.client.executeRequest(
                uri: "/v1/worker/jobs/\(job["request_id"]!.stringValue!)/files?name=a%00b&lease_token=\(job["lease_token"]!.stringValue!)",
                method: .post, headers: [.authorization: "Bearer \(Self.key)"], body: ByteBuffer(string: "bytes"))
            #expect(upload.status.code == 400, "\(String(buffer: upload.body))")
        }
    }
}

/// A worker that hangs up is not handed jobs it will never see.
extension HostileClientTests {
    /// A long-poll whose client hung up used to stay registered until its wait ran out and could
    /// claim a job in its name, which then sat running for its whole lease and used a retry.
    @Test func aWorkerThatHangsUpWhileWaitingIsHandedNothing() async throws {
        try await Self.withKeyedBroker { client in
            let broker = client.withKey(Self.key)
            let model = uniqueModel("hang-up")
            let body = ["worker_id": "gone", "models": [.string(model)], "wait_seconds": 25] as JSONValue
            let longPoll = SlowRequest(
                .POST, broker.baseURL + "/v1/worker/lease", headers: Self.auth + [("Content-Type", "application/json")],
                first: ByteBuffer(string: body.jsonText), length: body.jsonText.utf8.count)
            longPoll.finish()
            try await eventually("the long-poll waits") { broker.waitingLeases() == 1 }
            longPoll.hangUp()
            try await eventually("the broker notices the hang-up and stops waiting", timeout: .seconds(5)) { broker.waitingLeases() == 0 }

            let id = try await broker.submit(model: model)
            #expect(try await broker.status(model: model, requestID: id)["status"] == "pending")
            let job = try #require(try await broker.lease(models: [model]).first?.objectValue)
            #expect(job["request_id"] == .string(id) && job["attempt"] == 1, "the job's first attempt is the live worker's: \(job)")
        }
    }

    /// Jobs claimed for an answer that never reaches its worker go back to the queue at once, as
    /// if never claimed (no attempt, no retry), instead of sitting out their lease.
    @Test func anUndeliveredLeaseAnswerHandsItsJobsBack() async throws {
        try await Self.withKeyedBroker { client in
            let broker = client.withKey(Self.key)
            let model = uniqueModel("undelivered")
            let ids = [try await broker.submit(model: model), try await broker.submit(model: model)]
            try await TestDatabase.withStore { store in
                let claimed = try await store.jobs.claim(
                    models: [model], limit: 2, leaseSeconds: 600, maxRunSeconds: 3600, workerID: "gone", on: store.client, logger: TestDatabase.logger
                )
                #expect(claimed.count == 2)
                let routes = WorkerRoutes(
                    store: store, waiters: LeaseWaiters(), configuration: BrokerConfiguration(), metrics: BrokerMetrics(),
                    completions: CompletionGroupCommit(store: store, logger: TestDatabase.logger))
                // The response that carried them is dropped unwritten.
                _ = LeaseHandover(jobs: claimed, routes: routes, logger: TestDatabase.logger)
                for id in ids {
                    try await eventually("job \(id) is back in the queue") {
                        try await broker.status(model: model, requestID: id)["status"] == "pending"
                    }
                }
            }
            let again = try await broker.lease(models: [model], maxJobs: 2)
            #expect(again.compactMap { $0.objectValue?["attempt"] } == [1, 1], "no attempt was used: \(again)")
            #expect(try await broker.status(model: model, requestID: ids[0])["retries"] == 0)
        }
    }
}
