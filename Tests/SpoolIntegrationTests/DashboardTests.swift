import Foundation
import HTTPTypes
import PostgresNIO
import SpoolCore
import SpoolStore
import Testing

@testable import SpoolBroker

/// The dashboard at `/ui` and the API it reads: the keyset-paged job list, an operator's requeue
/// and cancel (recorded), the per-minute history, and the page itself in Debian's headless Chromium.
@Suite struct DashboardTests {
    static let adminKey = "dashboard-admin-\(UUID().uuidString)"

    /// Inserts `count` done jobs of `model`, one second apart, ending now; returns nothing.
    static func fill(_ client: PostgresClient, model: String, count: Int, status: String = "done", tenant: String = "default") async throws {
        try await client.query(
            """
            INSERT INTO jobs (request_id, model, status, payload, outputs, error, created_at, claimed_at, done_at, attempt, worker_id, tenant)
            SELECT gen_random_uuid(), \(model), \(status), jsonb_build_object('n', i), jsonb_build_object('n', i),
                   CASE WHEN \(status) = 'failed' THEN 'it broke' END,
                   now() - (\(count) - i) * interval '1 second', now() - (\(count) - i) * interval '1 second',
                   now() - (\(count) - i) * interval '1 second' + interval '0.5 second', 1, 'filler', \(tenant)
            FROM generate_series(1, \(count)) AS i
            """, logger: TestDatabase.logger)
        try await client.query("ANALYZE jobs", logger: TestDatabase.logger)
    }

    static func int(_ value: JSONValue) -> Int? { if case .int(let number) = value { Int(number) } else { nil } }

    static func encoded(_ text: String) -> String { text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text }

    /// Follows `next_cursor` from `start` (the first page) to the last or `maxPages`; returns every row's request id and the pages read.
    static func walk(
        _ broker: BrokerClient, _ query: String, from start: String? = nil, maxPages: Int = 2_000
    ) async throws -> (ids: [String], pages: Int) {
        var ids: [String] = []
        var cursor = start
        var pages = 0
        repeat {
            let answer = try await broker.call(.get, "/v1/jobs?\(query)" + (cursor.map { "&cursor=\(encoded($0))" } ?? ""))
            guard answer.status == 200, case .array(let rows)? = answer["data"] else {
                throw TestFailure("list failed: \(answer.status) \(answer.json)")
            }
            ids += rows.compactMap { $0.objectValue?["request_id"]?.stringValue }
            cursor = answer["next_cursor"]?.stringValue
            pages += 1
        } while cursor != nil && pages < maxPages
        return (ids, pages)
    }

    /// The plan PostgreSQL runs a page with, executed: (index names used, node types, rows the scan node read).
    static func plan(_ client: PostgresClient, _ query: PostgresQuery) async throws -> (indexes: Set<String>, nodes: Set<String>, scanned: Int) {
        let explained = PostgresQuery(unsafeSQL: "EXPLAIN (ANALYZE, FORMAT JSON) " + query.sql, binds: query.binds)
        let text = try await client.query(explained, logger: TestDatabase.logger).collect().first!.decode(String.self)
        var indexes: Set<String> = []
        var nodes: Set<String> = []
        var scanned = 0
        func visit(_ node: JSONValue) {
            guard let object = node.objectValue else { return }
            if let type = object["Node Type"]?.stringValue { nodes.insert(type) }
            if let index = object["Index Name"]?.stringValue {
                indexes.insert(index)
                if case .int(let rows)? = object["Actual Rows"] { scanned += Int(rows) }
            }
            for child in object["Plans"]?.arrayValue ?? [] { visit(child) }
        }
        visit(try JSONValue.parse(text).arrayValue?.first?.objectValue?["Plan"] ?? .null)
        return (indexes, nodes, scanned)
    }

    @Test func theJobListPagesEveryRowOnceAndEachPageReadsABoundedSliceOfAnIndex() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let model = "bulk/\(UUID().uuidString.prefix(8).lowercased())"
            let clientKey = "dashboard-globex-\(UUID().uuidString)"
            try await TestDatabase.withClient(database: database) { client in
                try await Self.fill(client, model: "other/model", count: 300)
                try await Self.fill(client, model: model, count: 100_000)
                try await Self.fill(client, model: model, count: 7, status: "failed")
                try await Self.fill(client, model: "other/model", count: 5, tenant: "globex")
                _ = try await Store(client: client).apiKeys.create(
                    CreateKeyRequest(name: "globex", scopes: [.client], tenant: "globex"), key: clientKey, createdBy: "cli", on: client,
                    logger: TestDatabase.logger)
            }
            try await withTestBroker(database: database, { $0.apiKeys = [Self.adminKey] }) { anonymous in
                let broker = anonymous.withKey(Self.adminKey)
                // The model's newest 12,000 jobs exactly once, newest first, 200 a page; then 10 pages from deep
                // in its 100,007, from a cursor; then another model's 305 jobs among them all, 7 a page.
                let started = ContinuousClock.now
                let newest = try await Self.walk(broker, "model=\(Self.encoded(model))&limit=200", maxPages: 60)
                let walked = ContinuousClock.now - started
                let expected = try await TestDatabase.withClient(database: database) { client in
                    try await client.query(
                        "SELECT id, request_id::text FROM jobs WHERE model = \(model) ORDER BY id DESC", logger: TestDatabase.logger
                    )
                    .collect().map { try $0.decode((Int64, String).self) }
                }
                #expect(newest.ids == expected.prefix(12_000).map(\.1))
                print("dashboard list: 12,000 of 100,007 jobs in \(newest.pages) pages of 200 in \(walked) (\(walked / newest.pages) a page)")
                let deep = try await Self.walk(broker, "model=\(Self.encoded(model))&limit=200", from: "i\(expected[80_000].0)", maxPages: 10)
                #expect(deep.ids == expected[80_001..<82_001].map(\.1))
                let other = try await Self.walk(broker, "model=other%2Fmodel&limit=7")
                #expect(other.ids.count == 305 && Set(other.ids).count == 305)

                // A filter that matches rarely: 7 failed jobs among 100,307, each page reading at most one slice.
                let failed = try await Self.walk(broker, "model=\(Self.encoded(model))&status=failed")
                #expect(failed.ids.count == 7)
                #expect(failed.pages <= 100_007 / JobsTable.maxListScan + 2)
                let everyFailed = try await Self.walk(broker, "status=failed&limit=3")
                #expect(everyFailed.ids.count == 7)

                // A request-id prefix, on the request id index, in request-id order.
                let prefixed = try await Self.walk(broker, "request_id=a1&limit=100")
                let expectedPrefixed = try await TestDatabase.withClient(database: database) { client in
                    try await client.query(
                        "SELECT request_id::text FROM jobs WHERE request_id::text LIKE 'a1%' ORDER BY request_id", logger: TestDatabase.logger
                    )
                    .collect().map { try $0.decode(String.self) }
                }
                #expect(prefixed.ids == expectedPrefixed && expectedPrefixed.count > 100)
                let dashed = try await Self.walk(broker, "request_id=\(expectedPrefixed[0].prefix(13))")
                #expect(dashed.ids.first == expectedPrefixed[0])

                // A time range: the jobs created in one 60-second window.
                let window = try await TestDatabase.withClient(database: database) { client in
                    try await client.query(
                        """
                        SELECT to_char((now() - interval '1000 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                               to_char((now() - interval '940 seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
                        """, logger: TestDatabase.logger
                    ).collect().first!.decode((String, String).self)
                }
                let ranged = try await Self.walk(
                    broker, "model=\(Self.encoded(model))&created_after=\(Self.encoded(window.0))&created_before=\(Self.encoded(window.1))")
                let expectedRanged = try await TestDatabase.withClient(database: database) { client in
                    try await client.query(
                        """
                        SELECT count(*) FROM jobs WHERE model = \(model)
                          AND created_at >= \(window.0)::timestamptz AND created_at < \(window.1)::timestamptz
                        """, logger: TestDatabase.logger
                    ).collect().first!.decode(Int.self)
                }
                #expect(ranged.ids.count == expectedRanged && expectedRanged >= 59)

                // A tenant's client key lists its tenant's jobs and nothing else.
                let globex = try await Self.walk(anonymous.withKey(clientKey), "limit=50")
                #expect(globex.ids.count == 5)

                // What a caller gets wrong is a 400 naming the parameter, and changes nothing.
                for (query, parameter) in [
                    ("status=lost", "status"), ("priority=high", "priority"), ("created_after=yesterday", "created_after"),
                    ("request_id=xyz", "request_id"), ("cursor=q12", "cursor"), ("limit=201", "limit"), ("sort=id", "sort"),
                    ("request_id=ab&cursor=i12", "cursor"),
                ] {
                    let answer = try await broker.call(.get, "/v1/jobs?\(query)")
                    #expect(answer.status == 400 && answer["param"]?.stringValue == parameter, "\(query): \(answer.json)")
                }
                #expect(try await anonymous.call(.get, "/v1/jobs").status == 401)
            }

            // The plans: a deep page walks one index backwards from its cursor and reads only what it returns;
            // a sparse filter reads at most one slice; no page sorts or scans the table.
            try await TestDatabase.withClient(database: database) { client in
                let deep = try await client.query(
                    "SELECT id FROM jobs WHERE model = \(model) ORDER BY id LIMIT 1 OFFSET 50000", logger: TestDatabase.logger
                )
                .collect().first!.decode(Int64.self)
                // The bulk model is nearly every row: PostgreSQL may walk the primary key and test the model.
                let either: Set<String> = ["jobs_model_order", "jobs_pkey"]
                let modelOrder: Set<String> = ["jobs_model_order"]
                let primaryKey: Set<String> = ["jobs_pkey"]
                let cases: [(JobListFilter, Set<String>, Int)] = [
                    (JobListFilter(model: model), either, 51),
                    (JobListFilter(model: "other/model"), modelOrder, 51),
                    (JobListFilter(), primaryKey, 51),
                    (JobListFilter(model: model, status: .failed), either, JobsTable.maxListScan),
                    (JobListFilter(model: "other/model", status: .failed), modelOrder, JobsTable.maxListScan),
                ]
                for (filter, indexes, bound) in cases {
                    let statements = try JobsTable.listStatements(filter, cursor: .beforeID(deep), limit: 50)
                    let started = ContinuousClock.now
                    let plan = try await Self.plan(client, statements.page)
                    print(
                        "dashboard list plan (\(filter)): \(plan.indexes), \(plan.nodes.sorted()), \(plan.scanned) entries read, \(ContinuousClock.now - started)"
                    )
                    #expect(plan.indexes.count == 1 && plan.indexes.isSubset(of: indexes), "\(plan)")
                    #expect(!plan.nodes.contains("Seq Scan") && !plan.nodes.contains("Sort"), "\(plan)")
                    #expect(plan.scanned <= bound, "\(plan)")
                }
                let prefix = try JobsTable.listStatements(JobListFilter(requestIDPrefix: "a1"), cursor: nil, limit: 50)
                let plan = try await Self.plan(client, prefix.page)
                #expect(plan.indexes == ["jobs_request_id_key"] && !plan.nodes.contains("Sort") && plan.scanned <= 51, "\(plan)")
            }
        }
    }

    @Test func operatorsRequeueFailedJobsAndTheirActionsAreRecorded() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let clientKey = "dashboard-client-\(UUID().uuidString)"
            try await TestDatabase.withClient(database: database) { client in
                _ = try await Store(client: client).apiKeys.create(
                    CreateKeyRequest(name: "client", scopes: [.client, .worker]), key: clientKey, createdBy: "cli", on: client,
                    logger: TestDatabase.logger)
            }
            try await withTestBroker(database: database, { $0.apiKeys = [Self.adminKey] }) { anonymous in
                let admin = anonymous.withKey(Self.adminKey)
                let client = anonymous.withKey(clientKey)
                let model = uniqueModel("requeue")
                let id = try await client.submit(model: model)
                let reference: JSONValue = ["model": .string(model), "request_id": .string(id)]
                // Only a failed job is requeued: a pending one is a 409 that changes nothing.
                let early = try await admin.post("/v1/queue/requeue", reference)
                #expect(early.status == 409 && early["code"] == "job_not_failed" && early["status"] == "pending", "\(early.json)")
                let first = try #require(try await client.lease(models: [model]).first)
                #expect(try await client.write("fail", job: first, ["error": "out of memory", "retryable": false]).status == 200)
                // A client key may not requeue; an unknown job is a 404.
                #expect(try await client.post("/v1/queue/requeue", reference).status == 403)
                let unknown = try await admin.post("/v1/queue/requeue", ["model": .string(model), "request_id": .string(UUID().uuidString)])
                #expect(unknown.status == 404)
                let requeued = try await admin.post("/v1/queue/requeue", reference)
                #expect(requeued.status == 200 && requeued["status"] == "pending", "\(requeued.json)")
                let pending = try await admin.status(model: model, requestID: id)
                #expect(pending["status"] == "pending" && pending["error"] == .null)
                let history = pending["info"]?.objectValue?["retry_history"]?.arrayValue ?? []
                // The failed attempt's entry, then the requeue's: who did it.
                #expect(history.count == 2, "\(history)")
                #expect(history.first?.objectValue?["reason"] == "failed" && history.first?.objectValue?["error"] == "out of memory")
                #expect(history.last?.objectValue?["reason"] == "requeued" && history.last?.objectValue?["by"] != nil, "\(history)")
                #expect(try await admin.post("/v1/queue/requeue", reference).status == 409)
                // The new attempt runs and completes; the old lease token is refused.
                let second = try #require(try await client.lease(models: [model]).first)
                #expect(second.objectValue?["attempt"] == 2)
                #expect(try await client.write("complete", job: first, ["outputs": ["late": true]]).status == 409)
                #expect(try await client.write("complete", job: second, ["outputs": ["ok": true]]).status == 200)
                #expect(try await admin.status(model: model, requestID: id)["status"] == "done")

                // An admin's cancel is recorded; a client's cancel of its own job is not an audit event.
                let adminCanceled = try await client.submit(model: model)
                let clientCanceled = try await client.submit(model: model)
                #expect(try await admin.post("/v1/queue/cancel", ["model": .string(model), "request_id": .string(adminCanceled)]).status == 200)
                #expect(try await client.post("/v1/queue/cancel", ["model": .string(model), "request_id": .string(clientCanceled)]).status == 200)
                let audit = try await admin.call(.get, "/v1/admin/audit")
                let events = (audit["data"]?.arrayValue ?? []).compactMap(\.objectValue)
                let actions = events.map { "\($0["action"]?.stringValue ?? "") \($0["target"]?.stringValue ?? "")" }
                #expect(actions.contains("job.requeued \(id)"), "\(audit.json)")
                #expect(actions.contains("job.canceled \(adminCanceled)"), "\(audit.json)")
                #expect(!actions.contains("job.canceled \(clientCanceled)"), "\(audit.json)")
            }
        }
    }

    @Test func theHistoryCountsEachMinutesEndsPerModel() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            _ = try await TestDatabase.withClient(database: database) { client in
                // 3 done jobs 10 minutes ago, 2 failed 5 minutes ago, 4 done now; one 2 hours ago is outside.
                try await client.query(
                    """
                    INSERT INTO jobs (request_id, model, status, payload, error, created_at, done_at)
                    SELECT gen_random_uuid(), 'hist/a', s, '{}', CASE WHEN s = 'failed' THEN 'x' END, now() - ago, now() - ago
                    FROM (VALUES ('done', interval '10 minutes 20 seconds'), ('done', interval '10 minutes 20 seconds'),
                                 ('done', interval '10 minutes 20 seconds'), ('failed', interval '5 minutes 20 seconds'),
                                 ('failed', interval '5 minutes 20 seconds'), ('done', interval '1 second'), ('done', interval '1 second'),
                                 ('done', interval '1 second'), ('done', interval '1 second'), ('done', interval '2 hours')) AS v(s, ago)
                    """, logger: TestDatabase.logger)
            }
            try await withTestBroker(database: database, { $0.apiKeys = [Self.adminKey] }) { anonymous in
                let answer = try await anonymous.withKey(Self.adminKey).call(.get, "/v1/stats/history")
                #expect(answer.status == 200 && answer["bucket_seconds"] == 60 && answer["capped"] == false, "\(answer.json)")
                let models = answer["models"]?.arrayValue ?? []
                #expect(models.count == 1)
                let completed = models.first?.objectValue?["completed"]?.arrayValue?.compactMap(Self.int) ?? []
                let failed = models.first?.objectValue?["failed"]?.arrayValue?.compactMap(Self.int) ?? []
                #expect(completed.count == 60 && failed.count == 60)
                #expect(completed[59] == 4 && completed[49] == 3 && completed.reduce(0, +) == 7, "\(completed)")
                #expect(failed[54] == 2 && failed.reduce(0, +) == 2, "\(failed)")
                // A key without the admin scope gets 403.
                #expect(try await anonymous.call(.get, "/v1/stats/history").status == 401)
            }
        }
    }

    @Test func thePageIsServedWithoutAKeyAndWithItsSecurityHeaders() async throws {
        try await withTestBroker({ $0.apiKeys = [Self.adminKey] }) { broker in
            for (path, type) in [("/ui", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/app.css", "text/css")] {
                let response = try await broker.client.executeRequest(uri: path, method: .get, headers: [:], body: nil)
                #expect(response.status == .ok, "\(path)")
                #expect(response.headers[.contentType]?.hasPrefix(type) == true, "\(path)")
                #expect(response.headers[.contentSecurityPolicy] == DashboardRoutes.contentSecurityPolicy)
                #expect(response.headers[.xFrameOptions] == "DENY" && response.headers[.xContentTypeOptions] == "nosniff")
                #expect(response.body.readableBytes > 500, "\(path) is nearly empty")
                let etag = try #require(response.headers[.eTag])
                let again = try await broker.client.executeRequest(uri: path, method: .get, headers: [.ifNoneMatch: etag], body: nil)
                #expect(again.status == .notModified && again.body.readableBytes == 0)
            }
            let html = String(buffer: try await broker.client.executeRequest(uri: "/ui", method: .get, headers: [:], body: nil).body)
            // No inline script or style attribute: the CSP would block them.
            #expect(!html.contains("<script>") && !html.contains("style=\"") && !html.contains("onclick"))
            #expect(try await broker.call(.get, "/ui/secrets.txt").status == 404)
            #expect(try await broker.call(.get, "/ui/..%2FPackage.swift").status == 404)
        }
    }

    /// The dashboard driven in Debian's headless Chromium by Selenium against a live broker with a
    /// real worker: login, the overview's live counts, a job's live progress and logs, cancel and
    /// requeue from the page (checked with the together SDK), paging 100,000 jobs, batches, phone width.
    @Test func theDashboardInHeadlessChromium() async throws {
        let screenshots = SpawnedProcess.packageRoot + "/.build/dashboard-screenshots"
        try? FileManager.default.removeItem(atPath: screenshots)
        try FileManager.default.createDirectory(atPath: screenshots, withIntermediateDirectories: true)
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await TestDatabase.withClient(database: database) { client in
                try await Self.fill(client, model: "ui/bulk", count: 100_000)
            }
            // An open broker (no key anywhere in its database) beside the keyed one.
            try await TestDatabase.withFreshDatabase(migrated: true) { openDatabase in
                let broker = try await BrokerProcess.start(
                    databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", Self.adminKey])
                let open = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: openDatabase))
                let (status, output) = try await PythonScript.run(
                    "dashboard_ui.py",
                    environment: [
                        "SPOOL_URL": broker.baseURL, "SPOOL_ADMIN_KEY": Self.adminKey,
                        "SPOOL_WORKER": SpawnedProcess.buildDirectory + "/spool-worker", "SPOOL_SCREENSHOTS": screenshots,
                        "SPOOL_BULK_MODEL": "ui/bulk", "SPOOL_HANDLER": SpawnedProcess.packageRoot + "/Tests/sdk/dashboard_handler.py",
                        "SPOOL_OPEN_URL": open.baseURL,
                    ],
                    timeout: .seconds(420))
                #expect(status == 0, "dashboard script failed:\n\(output)\nthe broker said:\n\(broker.process.output.suffix(6000))")
                #expect(output.contains("j. open broker") && output.contains("DASHBOARD OK"), "\(output)")
                print(output.split(separator: "\n").filter { $0.contains("paging") }.joined(separator: "\n"))
                for name in ["login", "overview", "job", "workers", "jobs", "batches", "overview-phone", "job-phone"] {
                    #expect(FileManager.default.fileExists(atPath: "\(screenshots)/\(name).png"), "no \(name).png")
                }
                #expect(await broker.process.stop() == 0, "\(broker.process.output.suffix(4000))")
                #expect(await open.process.stop() == 0, "\(open.process.output.suffix(4000))")
            }
        }
    }
}
