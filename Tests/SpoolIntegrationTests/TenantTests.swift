import AsyncHTTPClient
import Foundation
import HTTPTypes
import Logging
import SpoolCore
import Testing

@testable import SpoolBroker
@testable import SpoolStore

/// Tenants: one cannot see another's jobs, files or batches; within a priority they are served in
/// turn (by weight), not first-come across tenants; quotas refuse with 429 and store nothing.
@Suite struct TenantTests {
    static func client(_ admin: BrokerClient, tenant: String) async throws -> BrokerClient {
        admin.withKey(try await KeyScopeTests.createKey(admin, ["name": .string(tenant), "scopes": ["client"], "tenant": .string(tenant)]).key)
    }

    static func upload(_ client: BrokerClient, _ content: String) async throws -> String {
        let boundary = "b-\(UUID().uuidString)"
        var headers = HTTPFields()
        headers[.contentType] = "multipart/form-data; boundary=\(boundary)"
        let answer = try await client.call(.post, "/v1/files", body: multipartBody(boundary: boundary, content: content), headers: headers)
        guard answer.status == 200, let id = answer["id"]?.stringValue else { throw TestFailure("upload failed: \(answer.status) \(answer.json)") }
        return id
    }

    /// A status stream's answer: its status and, unless it opened (200), its JSON body.
    static func streamHead(_ broker: BrokerClient, _ client: BrokerClient, _ path: String) async throws -> Answer {
        var request = HTTPClientRequest(url: broker.baseURL + path)
        request.headers.add(name: "Authorization", value: "Bearer \(client.apiKey ?? "")")
        let response = try await SlowRequest.http.execute(request, timeout: .seconds(30))
        var fields = HTTPFields()
        for (name, value) in response.headers { if let name = HTTPField.Name(name) { fields.append(.init(name: name, value: value)) } }
        guard response.status != .ok else { return Answer(status: 200, headers: fields, json: .null) }
        let body = try await response.body.collect(upTo: 1 << 16)
        return Answer(status: Int(response.status.code), headers: fields, json: try JSONValue.parse(body.readableBytesView))
    }

    @Test func anotherTenantsJobsFilesAndBatchesAreNotFoundOnEveryRoute() async throws {
        let adminKey = "admin-\(UUID().uuidString)"
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(database: database, { $0.apiKeys = [adminKey] }) { broker in
                let admin = broker.withKey(adminKey)
                let acme = try await Self.client(admin, tenant: "acme")
                let globex = try await Self.client(admin, tenant: "globex")
                let model = "tenants/\(UUID().uuidString.prefix(8).lowercased())"

                let job = try await acme.submit(model: model)
                let falJob = try #require(try await acme.post("/fal/\(model)", ["prompt": "x"])["request_id"]?.stringValue)
                let line = JSONValue.object(["custom_id": "a", "body": ["model": .string(model), "payload": [:]]]).jsonText
                let file = try await Self.upload(acme, line + "\n")
                let created = try await acme.post("/v1/batches", ["input_file_id": .string(file), "endpoint": "/v1/queue/submit"])
                let batch = try #require(created["job"]?.objectValue?["id"]?.stringValue, "\(created.json)")

                // Every route that takes an id: the other tenant's answer is an unknown id's, byte for byte but the id.
                let unknownJob = UUID().uuidString.lowercased()
                let unknownFile = "file-\(UUID().uuidString.lowercased())"
                let unknownBatch = UUID().uuidString.lowercased()
                let routes: [(HTTPRequest.Method, (String) -> String, String?, String, String)] = [
                    (.get, { "/v1/queue/status?model=\(model)&request_id=\($0)" }, nil, job, unknownJob),
                    (.get, { "/v1/queue/status/stream?model=\(model)&request_id=\($0)" }, nil, job, unknownJob),
                    (.post, { _ in "/v1/queue/cancel" }, #"{"model": "\#(model)", "request_id": "ID"}"#, job, unknownJob),
                    (.get, { "/fal/\(model)/requests/\($0)/status" }, nil, falJob, unknownJob),
                    (.get, { "/fal/\(model)/requests/\($0)/status/stream" }, nil, falJob, unknownJob),
                    (.get, { "/fal/\(model)/requests/\($0)" }, nil, falJob, unknownJob),
                    (.put, { "/fal/\(model)/requests/\($0)/cancel" }, nil, falJob, unknownJob),
                    (.get, { "/v1/files/\($0)" }, nil, file, unknownFile),
                    (.get, { "/v1/files/\($0)/content" }, nil, file, unknownFile),
                    (.delete, { "/v1/files/\($0)" }, nil, file, unknownFile),
                    (.get, { "/v1/batches/\($0)" }, nil, batch, unknownBatch),
                    (.post, { "/v1/batches/\($0)/cancel" }, nil, batch, unknownBatch),
                    (.post, { _ in "/v1/batches" }, #"{"input_file_id": "ID", "endpoint": "/v1/queue/submit"}"#, file, unknownFile),
                ]
                for (method, path, body, theirs, unknown) in routes {
                    // A stream is read through a client with a deadline: if it opened, the test must fail, not hang.
                    let isStream = path(theirs).contains("/stream")
                    let refused =
                        try await isStream
                        ? Self.streamHead(broker, globex, path(theirs))
                        : globex.call(method, path(theirs), body: body?.replacingOccurrences(of: "ID", with: theirs))
                    let absent =
                        try await isStream
                        ? Self.streamHead(broker, globex, path(unknown))
                        : globex.call(method, path(unknown), body: body?.replacingOccurrences(of: "ID", with: unknown))
                    #expect(refused.status == 404, "\(method) \(path(theirs)): \(refused.status) \(refused.json)")
                    #expect(
                        refused.json.jsonText.replacingOccurrences(of: theirs, with: "ID")
                            == absent.json.jsonText.replacingOccurrences(of: unknown, with: "ID"),
                        "\(method) \(path(theirs)): \(refused.json) differs from an unknown id's \(absent.json)")
                    #expect(refused.headers[.contentType] == absent.headers[.contentType])
                }
                // Lists hold only the caller's own.
                #expect(try await globex.call(.get, "/v1/files")["data"]?.arrayValue?.isEmpty == true)
                #expect(try await globex.call(.get, "/v1/batches").json.arrayValue?.isEmpty == true)
                #expect(try await acme.call(.get, "/v1/files")["data"]?.arrayValue?.count == 1)

                // Nothing the other tenant tried changed anything; the owner and an admin still read them.
                #expect(try await acme.status(model: model, requestID: job)["status"] == "pending")
                #expect(try await acme.call(.get, "/fal/\(model)/requests/\(falJob)/status").status == 202)
                #expect(try await acme.call(.get, "/v1/files/\(file)/content").status == 200)
                #expect(try await acme.call(.get, "/v1/batches/\(batch)")["status"]?.stringValue != "CANCELLED")
                #expect(try await admin.status(model: model, requestID: job).status == 200)
                #expect(try await admin.call(.get, "/v1/files/\(file)").status == 200)

                // A worker's output file is the job's tenant's, whoever's key uploads it.
                let leased = try await admin.lease(models: [model], maxJobs: 10)
                let leasedJob = try #require(leased.first { $0.objectValue?["request_id"]?.stringValue == job })
                let token = leasedJob.objectValue?["lease_token"]?.stringValue ?? ""
                let output = try await admin.call(.post, "/v1/worker/jobs/\(job)/files?name=out.bin&lease_token=\(token)", body: "bytes")
                let outputID = try #require(output["file_id"]?.stringValue, "\(output.json)")
                #expect(try await acme.call(.get, "/v1/files/\(outputID)").status == 200)
                #expect(try await globex.call(.get, "/v1/files/\(outputID)").status == 404)
            }
        }
    }

    /// Start-time fair queuing on a real database: a tenant that arrives behind another's backlog
    /// is served in turn with it, weights divide the claims, and priority stays strict.
    @Test func aLateTenantIsServedInTurnWithABacklogAndWeightsDivideTheClaims() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await TestDatabase.withClient(database: database) { client in
                let store = Store(client: client)
                let logger = TestDatabase.logger
                func submit(_ tenant: String, _ count: Int, model: String, weight: Double = 1, priority: Int32 = 0) async throws -> Set<UUID> {
                    let jobs = (0..<count).map { _ in
                        NewJob(
                            request: SubmitRequest(model: model, payload: [:], priority: priority), requestID: UUID(), submittedBy: tenant,
                            tenant: tenant, weight: weight)
                    }
                    try await store.jobs.insertMany(jobs, on: client, logger: logger)
                    return Set(jobs.map(\.requestID))
                }
                func claim(_ count: Int, model: String) async throws -> [UUID] {
                    var order: [UUID] = []
                    for _ in 0..<count {
                        let claimed = try await store.jobs.claim(
                            models: [model], limit: 1, leaseSeconds: 60, maxRunSeconds: 60, workerID: "w", on: client, logger: logger)
                        order += claimed.map(\.requestID)
                    }
                    return order
                }

                let model = "fair/\(UUID().uuidString.prefix(6))"
                let backlog = try await submit("a", 2000, model: model)
                #expect(Set(try await claim(100, model: model)).isSubset(of: backlog))
                let late = try await submit("b", 20, model: model)
                let next = try await claim(44, model: model)
                #expect(late.isSubset(of: Set(next)), "b's 20 jobs start within 44 claims of arriving behind a's 1,900")
                #expect(next.filter(backlog.contains).count >= 20, "and a is served in turn, not paused")
                let urgent = try await submit("a", 1, model: model, priority: 5)
                #expect(Set(try await claim(1, model: model)) == urgent, "priority stays strict across tenants")

                let weighted = "fair/\(UUID().uuidString.prefix(6))"
                let heavy = try await submit("c", 300, model: weighted, weight: 2)
                _ = try await submit("d", 300, model: weighted)
                let claims = try await claim(90, model: weighted)
                let heavyShare = claims.filter(heavy.contains).count
                #expect((58...62).contains(heavyShare), "weight 2 against 1 takes two claims in three: \(heavyShare) of 90")

                // Batch lines take tags like submits: a batch's lines wait their turn with another tenant's jobs.
                let batched = "fair/\(UUID().uuidString.prefix(6))"
                _ = try await submit("e", 50, model: batched)
                let lines = (1...50).map { (line: Int32($0), customID: "l\($0)", request: SubmitRequest(model: batched, payload: [:])) }
                try await store.jobs.insertBatchLines(
                    lines, batchID: UUID(), priority: 0, submittedBy: "f", tenant: "f", weight: 1, on: client, logger: logger)
                let firstTen = try await claim(10, model: batched)
                let tenants = try await client.query("SELECT tenant FROM jobs WHERE request_id = ANY(\(firstTen))", logger: logger)
                    .collect().map { try $0.decode(String.self) }
                #expect((4...5).contains(tenants.filter { $0 == "f" }.count), "the batch's lines alternate with e's jobs: \(tenants)")
            }
        }
    }

    @Test func quotasRefuseWith429NamingTheLimitAndStoreNothing() async throws {
        let adminKey = "admin-\(UUID().uuidString)"
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(
                database: database,
                {
                    $0.apiKeys = [adminKey]
                    $0.tenants = try! TenantSettings.parse(["acme:max-pending=3", "rated:rate=0.01,burst=2", "busy:max-running=1"])
                }
            ) { broker in
                let admin = broker.withKey(adminKey)
                let model = "quota/\(UUID().uuidString.prefix(8).lowercased())"
                func stored(_ tenant: String) async throws -> Int {
                    try await TestDatabase.withClient(database: database) { client in
                        try await client.query("SELECT count(*) FROM jobs WHERE tenant = \(tenant)", logger: TestDatabase.logger)
                            .collect().first?.decode(Int.self) ?? -1
                    }
                }

                let acme = try await Self.client(admin, tenant: "acme")
                for _ in 0..<3 { _ = try await acme.submit(model: model) }
                let full = try await acme.post("/v1/queue/submit", ["model": .string(model), "payload": [:]])
                #expect(full.status == 429 && full["code"] == "max_pending_exceeded" && full["limit"] == "max_pending", "\(full.json)")
                #expect(full.headers[.retryAfter] != nil)
                let falFull = try await acme.post("/fal/\(model)", ["prompt": "x"])
                #expect(falFull.status == 429 && falFull["limit"] == "max_pending", "\(falFull.json)")
                #expect(try await stored("acme") == 3)
                #expect(try await admin.lease(models: [model]).count == 1)
                _ = try await acme.submit(model: model)
                #expect(try await stored("acme") == 4, "a started job frees its place")

                let rated = try await Self.client(admin, tenant: "rated")
                for _ in 0..<2 { _ = try await rated.submit(model: model) }
                let fast = try await rated.post("/v1/queue/submit", ["model": .string(model), "payload": [:]])
                #expect(fast.status == 429 && fast["code"] == "rate_limit_exceeded" && fast["limit"] == "submits_per_second", "\(fast.json)")
                let retryAfter = try #require(fast.headers[.retryAfter].flatMap(Int.init))
                #expect((90...100).contains(retryAfter), "one token comes back in 100 s at 0.01/s: \(retryAfter)")
                #expect(try await stored("rated") == 2)
                // The bucket refills with time (moved on here rather than waited for): the next submit goes through.
                _ = try await TestDatabase.withClient(database: database) { client in
                    try await client.query(
                        "UPDATE rate_buckets SET refilled_at = refilled_at - interval '100 seconds' WHERE tenant = 'rated'",
                        logger: TestDatabase.logger)
                }
                _ = try await rated.submit(model: model)
                #expect(try await stored("rated") == 3)

                // A bulk submit is admitted whole or refused whole: more jobs than the burst can never pass,
                // and jobs that would overfill max-pending store none.
                let overBurst = try await rated.post(
                    "/v1/queue/submit", .array(Array(repeating: ["model": .string(model), "payload": [:]], count: 3)))
                #expect(overBurst.status == 400 && overBurst["code"] == "bulk_exceeds_burst", "\(overBurst.json)")
                let overfull = try await acme.post("/v1/queue/submit", .array(Array(repeating: ["model": .string(model), "payload": [:]], count: 2)))
                #expect(overfull.status == 429 && overfull["code"] == "max_pending_exceeded", "\(overfull.json)")
                #expect(try await stored("rated") == 3)
                #expect(try await stored("acme") == 4)

                let busyModel = "busy/\(UUID().uuidString.prefix(8).lowercased())"
                let busy = try await Self.client(admin, tenant: "busy")
                for _ in 0..<3 { _ = try await busy.submit(model: busyModel) }
                _ = try await admin.submit(model: busyModel)
                let first = try await admin.lease(models: [busyModel], maxJobs: 10)
                #expect(first.count == 2, "one of busy's jobs (its limit) and the default tenant's: \(first.count)")
                let second = try await admin.lease(models: [busyModel], maxJobs: 10)
                #expect(second.isEmpty, "busy is at its running limit")
                for job in first { #expect(try await admin.write("complete", job: job, ["outputs": [:]]).status == 200) }
                #expect(try await admin.lease(models: [busyModel], maxJobs: 10).count == 1, "a finished job frees the slot")
            }
        }
    }

    @Test func tenantSettingsParseOverridesAndRefuseNonsense() throws {
        let settings = try TenantSettings.parse(["acme:weight=3,rate=5", "*:max-running=2,max-pending=100", "vip:max-running=none"])
        #expect(settings.limits(of: "acme").weight == 3 && settings.limits(of: "acme").submitsPerSecond == 5)
        #expect(settings.limits(of: "acme").bucketSize == 5 && settings.limits(of: "acme").maxRunningPerModel == 2)
        #expect(settings.limits(of: "vip").maxRunningPerModel == nil && settings.limits(of: "vip").maxPending == 100)
        #expect(settings.limits(of: "anyone").maxRunningPerModel == 2 && settings.limits(of: "anyone").weight == 1)
        for bad in ["acme", "acme:weight=0", "acme:rate=-1", "acme:burst=0", "acme:colour=red", "bad name:weight=1", "acme:max-running=x"] {
            #expect(throws: ConfigurationError.self, "\(bad)") { try TenantSettings.parse([bad]) }
        }
    }
}
