import Foundation
import HTTPTypes
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolBroker
@testable import SpoolStore

/// Together's Queue API against a real broker socket and a real PostgreSQL.
@Suite struct QueueAPITests {
    /// Claims up to `limit` of `model`'s jobs as worker "w", straight through the store.
    static func claim(_ model: String, limit: Int) async throws {
        try await TestDatabase.withStore { store in
            _ = try await store.jobs.claim(
                models: [model], limit: limit, leaseSeconds: 30, maxRunSeconds: 3600, workerID: "w", on: store.client, logger: TestDatabase.logger)
        }
    }

    /// The estimated wait: slot releases ahead of the job at the pace the slots finish attempts.
    @Test func theEstimatedWaitCountsSlotReleases() {
        func wait(_ position: Int, running: Int, live: Int, run: Double?) -> Double? {
            QueuePositions.estimatedWait(position: position, running: running, liveWorkers: live, meanRunSeconds: run)
        }
        // One worker of concurrency 2 busy with 1 s jobs: the next job starts in about 0.25 s, the 24th in 11.75 s.
        #expect(wait(0, running: 2, live: 1, run: 1) == 0.25)
        #expect(wait(23, running: 2, live: 1, run: 1) == 11.75)
        // Free slots start jobs at once; past them, releases.
        #expect(wait(0, running: 1, live: 3, run: 4) == 0)
        #expect(wait(1, running: 1, live: 3, run: 4) == 0)
        #expect(wait(2, running: 1, live: 3, run: 4) == 0.5 * 4 / 3)
        // No live worker, or no attempt ended lately (a cold start): no estimate rather than a guess.
        #expect(wait(5, running: 0, live: 0, run: 1) == nil)
        // A running job counts as a slot before the live-worker snapshot sees its worker.
        #expect(wait(0, running: 1, live: 0, run: 2) == 1)
        #expect(wait(5, running: 2, live: 1, run: nil) == nil)
    }

    @Test func submitThenStatusShowsThePendingJob() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let before = Date()
            let answer = try await broker.post(
                "/v1/queue/submit", ["model": .string(model), "payload": ["prompt": "a cat"], "info": ["user": "u1"], "priority": 5])
            #expect(answer.status == 200)
            let id = try #require(answer["requestId"]?.stringValue)
            #expect(UUID(uuidString: id) != nil)

            let status = try await broker.status(model: model, requestID: id)
            #expect(status.status == 200)
            #expect(status["model"] == .string(model))
            #expect(status["request_id"] == .string(id))
            #expect(status["status"] == "pending")
            #expect(status["priority"] == 5)
            #expect(status["inputs"] == ["prompt": "a cat"])
            #expect(status["info"] == ["user": "u1"])
            #expect(status["outputs"] == .null)
            #expect(status["error"] == .null)
            #expect(status["retries"] == 0)
            #expect(status["claimed_at"] == .null)
            #expect(status["done_at"] == .null)
            // No worker serves the model: the status says why the job will wait.
            let warnings = try #require(status["warnings"]?.arrayValue)
            #expect(warnings.count == 1)
            #expect(warnings.first?.stringValue?.contains("No live worker serves model '\(model)'") == true)
            let created = try #require(status["created_at"]?.stringValue.flatMap(RFC3339.date(from:)))
            #expect(abs(created.timeIntervalSince(before)) < 60)
        }
    }

    @Test func statusFollowsAClaimedJob() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            try await Self.claim(model, limit: 1)
            let status = try await broker.status(model: model, requestID: id)
            #expect(status["status"] == "running")
            #expect(status["claimed_at"]?.stringValue.flatMap(RFC3339.date(from:)) != nil)
        }
    }

    @Test func cancelingAPendingJob() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let answer = try await broker.post("/v1/queue/cancel", ["model": .string(model), "request_id": .string(id)])
            #expect(answer.status == 200)
            #expect(answer.json == ["status": "canceled"])
            let status = try await broker.status(model: model, requestID: id)
            #expect(status["status"] == "canceled")
            #expect(status["done_at"] != .null)
            // Canceling again is harmless and says the same.
            let again = try await broker.post("/v1/queue/cancel", ["model": .string(model), "request_id": .string(id)])
            #expect(again.status == 200 && again["status"] == "canceled")
        }
    }

    @Test(arguments: [JobStatus.running, .done, .failed])
    func cancelingAJobThatLeftPendingIsA409AndChangesNothing(status: JobStatus) async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            try await Self.claim(model, limit: 1)
            try await TestDatabase.withStore { store in
                if status != .running {
                    try await store.client.query(
                        """
                        UPDATE jobs SET status = \(status.rawValue), done_at = now(), lease_token = NULL, lease_expires_at = NULL,
                                        outputs = '{"ok": true}'
                        WHERE request_id = \(UUID(uuidString: id)!)
                        """, logger: TestDatabase.logger)
                }
            }
            let before = try await broker.status(model: model, requestID: id)
            let answer = try await broker.post("/v1/queue/cancel", ["model": .string(model), "request_id": .string(id)])
            #expect(answer.status == 409)
            #expect(answer["status"] == .string(status.rawValue))
            #expect(answer["type"] == "conflict_error")
            #expect(answer["code"] == "job_not_pending")
            #expect(answer.headers[HTTPField.Name("x-should-retry")!] == "false")
            #expect(try await broker.status(model: model, requestID: id).json == before.json)
        }
    }

    @Test func clearCancelsOnlyThatModelsPendingJobs() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let other = uniqueModel()
            let ids = try await (0..<4).asyncMap { _ in try await broker.submit(model: model) }
            let untouched = try await broker.submit(model: other)
            try await Self.claim(model, limit: 1)
            let answer = try await broker.post("/v1/queue/clear", ["model": .string(model)])
            #expect(answer.status == 200)
            #expect(answer.json == ["canceled_count": 3])
            let statuses = try await ids.asyncMap { try await broker.status(model: model, requestID: $0)["status"] }
            #expect(statuses.filter { $0 == "canceled" }.count == 3)
            #expect(statuses.filter { $0 == "running" }.count == 1)
            #expect(try await broker.status(model: other, requestID: untouched)["status"] == "pending")
        }
    }

    @Test func metricsCountWaitingAndRunning() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            #expect(try await broker.metrics(model: model).json == ["messages_waiting": 0, "messages_running": 0, "total_jobs": 0])
            for _ in 0..<5 { _ = try await broker.submit(model: model) }
            try await Self.claim(model, limit: 2)
            #expect(try await broker.metrics(model: model).json == ["messages_waiting": 3, "messages_running": 2, "total_jobs": 5])
        }
    }

    // MARK: Errors

    @Test(arguments: [
        ("/v1/queue/submit", "{not json", "invalid_json"),
        ("/v1/queue/submit", "", "invalid_body"),
        ("/v1/queue/submit", #"{"model":"M","payload":[1,2]}"#, "invalid_type"),
        ("/v1/queue/submit", #"{"model":"M"}"#, "missing_field"),
        ("/v1/queue/submit", #"{"model":"M","payload":{},"priority":"high"}"#, "invalid_type"),
        ("/v1/queue/submit", #"{"model":"M","payload":{},"info":"x"}"#, "invalid_type"),
        ("/v1/queue/cancel", #"{"model":"M"}"#, "missing_field"),
        ("/v1/queue/clear", #"{"models":"M"}"#, "missing_field"),
    ])
    func badBodiesAre400sAndStoreNothing(path: String, body: String, code: String) async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            _ = try await broker.submit(model: model)
            let answer = try await broker.call(.post, path, body: body.replacingOccurrences(of: "\"M\"", with: "\"\(model)\""))
            #expect(answer.status == 400)
            #expect(answer["type"] == "invalid_request_error")
            #expect(answer["code"] == .string(code))
            #expect(answer["message"]?.stringValue?.isEmpty == false)
            #expect(answer.json.objectValue.map { Set($0.keys) } == ["message", "type", "code", "param"])
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 1)
        }
    }

    @Test func queryParametersAreRequired() async throws {
        try await withTestBroker { broker in
            let missingID = try await broker.call(.get, "/v1/queue/status?model=m")
            #expect(missingID.status == 400 && missingID["param"] == "request_id")
            let missingModel = try await broker.call(.get, "/v1/queue/metrics")
            #expect(missingModel.status == 400 && missingModel["param"] == "model")
        }
    }

    @Test func unknownJobsAndRoutesAre404s() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            for (askedModel, askedID) in [(model, UUID().uuidString), (model, "not-a-uuid"), (uniqueModel(), id)] {
                let status = try await broker.status(model: askedModel, requestID: askedID)
                #expect(status.status == 404)
                #expect(status["type"] == "not_found_error")
                #expect(status["code"] == "job_not_found")
                let cancel = try await broker.post("/v1/queue/cancel", ["model": .string(askedModel), "request_id": .string(askedID)])
                #expect(cancel.status == 404)
            }
            #expect(try await broker.status(model: model, requestID: id)["status"] == "pending")
            let route = try await broker.call(.get, "/v1/nowhere")
            #expect(route.status == 404 && route["code"] == "unknown_route")
        }
    }

    @Test func bodiesOverTheLimitAre413sAndStoreNothing() async throws {
        try await withTestBroker({ $0.maxBodyBytes = 4096 }) { broker in
            let model = uniqueModel()
            let big = String(repeating: "x", count: 5000)
            let answer = try await broker.post("/v1/queue/submit", ["model": .string(model), "payload": ["blob": .string(big)]])
            #expect(answer.status == 413)
            #expect(answer["code"] == "payload_too_large")
            #expect(answer["type"] == "invalid_request_error")
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 0)
            // Just under the limit is fine.
            _ = try await broker.submit(model: model, payload: ["blob": .string(String(repeating: "x", count: 3000))])
        }
    }

    // MARK: API keys

    @Test func keysAreRequiredOnceConfigured() async throws {
        let key = "test-key-\(UUID().uuidString)"
        try await withTestBroker({ $0.apiKeys = [key] }) { broker in
            let model = uniqueModel()
            let missing = try await broker.withKey(nil).metrics(model: model)
            #expect(missing.status == 401)
            #expect(missing["type"] == "authentication_error")
            let unknown = try await broker.withKey("wrong-key-0123456789").post("/v1/queue/submit", ["model": .string(model), "payload": [:]])
            #expect(unknown.status == 401)
            let malformed = try await broker.withKey(nil).call(.get, "/v1/queue/metrics?model=m", headers: [.authorization: "Basic abc"])
            #expect(malformed.status == 401)
            let id = try await broker.withKey(key).submit(model: model)
            #expect(try await broker.withKey(key).status(model: model, requestID: id)["status"] == "pending")
            #expect(try await broker.withKey(nil).call(.get, "/healthz").status == 200)
            #expect(try await broker.withKey(key).metrics(model: model)["messages_waiting"] == 1)
        }
    }

    /// On its own database: a key in the table closes every broker that shares it.
    @Test func keysCreatedByTheAdminCommandAreStoredAsHashesAndWork() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let created = APIKeyHash.generateKey()
            let id = try await TestDatabase.withClient(database: database) { client in
                try await APIKeysTable().create(
                    CreateKeyRequest(name: "ci", scopes: Set(KeyScope.allCases)), key: created, createdBy: "cli", on: client,
                    logger: TestDatabase.logger
                ).id
            }
            try await withTestBroker(database: database) { broker in
                let model = uniqueModel()
                // No configured key: the table's key alone closes the broker.
                #expect(try await broker.withKey(nil).metrics(model: model).status == 401)
                _ = try await broker.withKey(created).submit(model: model)
            }
            let stored = try await TestDatabase.withClient(database: database) { client in
                try await client.query("SELECT key_hash, submitted_by FROM api_keys, jobs WHERE api_keys.id = \(id)", logger: TestDatabase.logger)
                    .collect().first?.decode((String, String).self)
            }
            #expect(stored?.0 == APIKeyHash.of(created))
            #expect(stored?.0.contains(created) == false)
            #expect(stored?.1 == id)
            _ = try await TestDatabase.withClient(database: database) { client in
                try await APIKeysTable().revoke(id: id, by: "cli", on: client, logger: TestDatabase.logger)
            }
            let afterRevoke = try await withTestBroker(database: database, { $0.apiKeys = ["some-configured-key-1234"] }) { broker in
                try await broker.withKey(created).metrics(model: "m").status
            }
            #expect(afterRevoke == 401)
        }
    }

    // MARK: Idempotency

    @Test func aRepeatedIdempotencyKeyReturnsTheFirstJob() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "retry-\(UUID().uuidString)"]
            let body: JSONValue = ["model": .string(model), "payload": ["prompt": "once"], "priority": 2]
            let first = try await broker.post("/v1/queue/submit", body, headers: key)
            #expect(first.status == 200)
            // Same request, members in another order: still the same request.
            let reordered = #"{"priority":2,"payload":{"prompt":"once"},"model":"\#(model)"}"#
            let second = try await broker.call(.post, "/v1/queue/submit", body: reordered, headers: key)
            #expect(second.status == 200)
            #expect(second["requestId"] == first["requestId"])
            #expect(second.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 1)

            let different = try await broker.post("/v1/queue/submit", ["model": .string(model), "payload": ["prompt": "twice"]], headers: key)
            #expect(different.status == 409)
            #expect(different["code"] == "idempotency_key_reused")
            #expect(different["param"] == "Idempotency-Key")
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 1)

            // Without the header, the same body is a new job.
            _ = try await broker.post("/v1/queue/submit", body)
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 2)
        }
    }

    @Test func concurrentSubmitsWithOneIdempotencyKeyCreateOneJob() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "race-\(UUID().uuidString)"]
            let ids = try await withThrowingTaskGroup(of: JSONValue?.self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        try await broker.post("/v1/queue/submit", ["model": .string(model), "payload": ["n": 1]], headers: key)["requestId"]
                    }
                }
                var ids: Set<JSONValue?> = []
                for try await id in group { ids.insert(id) }
                return ids
            }
            #expect(ids.count == 1)
            #expect(ids.first! != nil)
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 1)
        }
    }

    @Test func idempotencyKeysAreScopedPerAPIKey() async throws {
        let (alice, bob) = ("alice-key-\(UUID().uuidString)", "bob-key-\(UUID().uuidString)")
        try await withTestBroker({ $0.apiKeys = [alice, bob] }) { broker in
            let model = uniqueModel()
            let key: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "shared-name"]
            let body: JSONValue = ["model": .string(model), "payload": [:]]
            let first = try await broker.withKey(alice).post("/v1/queue/submit", body, headers: key)
            let second = try await broker.withKey(bob).post("/v1/queue/submit", body, headers: key)
            #expect(first.status == 200 && second.status == 200)
            #expect(first["requestId"] != second["requestId"])
        }
    }

    @Test func anEmptyOrOverlongIdempotencyKeyIsA400() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let long: HTTPFields = [HTTPField.Name("Idempotency-Key")!: String(repeating: "k", count: 300)]
            let answer = try await broker.post("/v1/queue/submit", ["model": .string(model), "payload": [:]], headers: long)
            #expect(answer.status == 400 && answer["param"] == "Idempotency-Key")
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 0)
        }
    }
}

extension Sequence {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
