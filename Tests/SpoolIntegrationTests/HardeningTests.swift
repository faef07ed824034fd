import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolBroker
@testable import SpoolStore

#if canImport(Glibc)
import Glibc
#endif

/// Races, growth and leaks found by trying: each test shows one that used to happen.
@Suite struct HardeningTests {
    static let key = "hardening-key-\(UUID().uuidString)"

    /// A cancel that waited for a claim's row lock read the job's old status from its snapshot and
    /// answered "this job is pending and was left unchanged". It answers the real state now.
    @Test func aCancelRacingAClaimAnswersTheJobsRealState() async throws {
        try await TestDatabase.withStore { store in
            let logger = TestDatabase.logger
            let model = uniqueModel("race")
            let id = UUID()
            try await store.jobs.insert(SubmitRequest(model: model, payload: [:]), requestID: id, submittedBy: "t", on: store.client, logger: logger)
            let cancel = try await store.client.withTransaction(logger: logger) { connection in
                // The claim holds the row in an open transaction while the cancel runs elsewhere.
                let claimed = try await store.jobs.claim(
                    models: [model], limit: 1, leaseSeconds: 60, maxRunSeconds: 3600, workerID: "w", on: connection, logger: logger)
                #expect(claimed.count == 1)
                let cancel = Task { try await store.jobs.cancel(model: model, requestID: id, tenant: nil, on: store.client, logger: logger) }
                // Asked on another connection: inside a transaction pg_stat_activity is a snapshot.
                try await eventually("the cancel waits for the claim's lock") {
                    let rows = try await store.client.query(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%now_canceled%'", logger: logger)
                    return try await rows.collect().first?.decode(Int.self) ?? 0 > 0
                }
                return cancel
            }
            #expect(try await cancel.value == .unchanged(.running))
        }
    }

    /// A worker's file upload is fenced when it ends, not only when it starts: a worker whose lease
    /// moved on during a long upload stores nothing.
    @Test func aWorkerUploadIsFencedAtItsEnd() async throws {
        try await withTestBroker({ $0.apiKeys = [Self.key] }) { client in
            let broker = client.withKey(Self.key)
            let model = uniqueModel("fence-end")
            let id = try await broker.submit(model: model)
            let job = try #require(try await broker.lease(models: [model], leaseSeconds: 60).first?.objectValue)
            let token = try #require(job["lease_token"]?.stringValue)
            let upload = SlowRequest(
                .POST, broker.baseURL + "/v1/worker/jobs/\(id)/files?name=late.bin&lease_token=\(token)",
                headers: [("Authorization", "Bearer \(Self.key)")], first: ByteBuffer(repeating: 1, count: 1000), length: 2000)
            try await TestDatabase.withStore { store in
                try await eventually("the upload has begun") {
                    let rows = try await store.client.query(
                        "SELECT count(*) FROM files WHERE request_id = \(UUID(uuidString: id)!) AND upload_holder IS NOT NULL",
                        logger: TestDatabase.logger)
                    return try await rows.collect().first?.decode(Int.self) == 1
                }
                // The lease runs out meanwhile and a broker's requeue puts the job back in the queue.
                try await store.client.query(
                    "UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE request_id = \(UUID(uuidString: id)!)",
                    logger: TestDatabase.logger)
            }
            try await eventually("the expired lease is requeued") { try await broker.status(model: model, requestID: id)["status"] == "pending" }
            upload.send(ByteBuffer(repeating: 2, count: 1000))
            upload.finish()
            let answer = try await upload.result.get()
            #expect(answer.status == 409 && answer["code"] == "lease_lost" && answer["status"] == "pending", "\(answer.status) \(answer.json)")
            let stored = try await TestDatabase.withStore { store in
                try await store.client.query("SELECT count(*) FROM files WHERE request_id = \(UUID(uuidString: id)!)", logger: TestDatabase.logger)
                    .collect().first?.decode(Int.self)
            }
            #expect(stored == 0)
        }
    }

    /// A job keeps its newest log lines up to the cap, in lines and in bytes; the oldest go.
    @Test func aJobKeepsItsNewestLogsWithinTheCap() async throws {
        try await withTestBroker({
            $0.apiKeys = [Self.key]
            $0.maxLogLinesPerJob = 10
            $0.maxLogBytesPerJob = 16 << 10
        }) { client in
            let broker = client.withKey(Self.key)
            let model = uniqueModel("log-cap")
            let id = try await broker.submit(model: model)
            let job = try #require(try await broker.lease(models: [model]).first)
            for write in 0..<3 {
                let lines: [JSONValue] = (0..<8).map { .string("line \(write * 8 + $0 + 1)") }
                #expect(try await broker.write("heartbeat", job: job, ["logs": .array(lines)]).status == 200)
            }
            var logs = try await Self.logs(broker, model: model, id: id)
            #expect(logs.count <= 10 && logs.last == "line 24", "\(logs)")
            #expect(logs == (24 - logs.count + 1...24).map { "line \($0)" }, "the newest, in order: \(logs)")

            // One write with more than the cap keeps its own newest lines.
            let many: [JSONValue] = (1...40).map { .string("burst \($0)") }
            #expect(try await broker.write("heartbeat", job: job, ["logs": .array(many)]).status == 200)
            logs = try await Self.logs(broker, model: model, id: id)
            #expect(logs.count <= 10 && logs.last == "burst 40", "\(logs)")

            // Bytes: 4 KiB lines, at most 16 KiB of them.
            let wide: [JSONValue] = (1...8).map { .string("\($0)" + String(repeating: "w", count: 4095)) }
            #expect(try await broker.write("complete", job: job, ["outputs": [:], "logs": .array(wide)]).status == 200)
            logs = try await Self.logs(broker, model: model, id: id)
            #expect(logs.map(\.utf8.count).reduce(0, +) <= 16 << 10 && logs.last?.hasPrefix("8w") == true, "\(logs.map(\.utf8.count))")
            let counters = try await TestDatabase.withStore { store in
                try await store.client.query(
                    """
                    SELECT log_lines, log_bytes, (SELECT count(*) FROM job_logs WHERE job_id = jobs.id),
                           (SELECT coalesce(sum(octet_length(message)), 0) FROM job_logs WHERE job_id = jobs.id)
                    FROM jobs WHERE request_id = \(UUID(uuidString: id)!)
                    """, logger: TestDatabase.logger
                ).collect().first?.decode((Int32, Int64, Int, Int64).self)
            }
            let (lines, bytes, counted, summed) = try #require(counters)
            #expect(Int(lines) == counted && bytes == summed, "the counters match what is stored")
        }
    }

    static func logs(_ broker: BrokerClient, model: String, id: String) async throws -> [String] {
        let status = try await broker.call(.get, "/v1/queue/status?model=\(model)&request_id=\(id)&logs=1")
        return (status["logs"]?.arrayValue ?? []).compactMap { $0.objectValue?["message"]?.stringValue }
    }

    /// Model names a client invents do not grow /metrics without bound; a metrics key guards it.
    @Test func metricSeriesAreCappedAndTheMetricsKeyIsRequired() async throws {
        let metricsKey = "metrics-key-\(UUID().uuidString)"
        try await withTestBroker({
            $0.apiKeys = [Self.key]
            $0.maxMetricModels = 3
            $0.metricsKey = metricsKey
        }) { client in
            let broker = client.withKey(Self.key)
            let prefix = "capped-\(UUID().uuidString.prefix(6).lowercased())"
            for index in 0..<8 { _ = try await broker.submit(model: "\(prefix)/m\(index)") }
            #expect(try await broker.withKey(nil).call(.get, "/metrics").status == 401)
            #expect(try await broker.call(.get, "/metrics").status == 401, "an API key is not the metrics key")
            let text = try await HTTP.text(broker.baseURL + "/metrics", headers: [("Authorization", "Bearer \(metricsKey)")])
            let labels = Set(
                text.split(separator: "\n").filter { $0.hasPrefix("spool_jobs_submitted_total") }.compactMap { line -> String? in
                    guard let start = line.range(of: "model=\"")?.upperBound else { return nil }
                    return String(line[start...].prefix { $0 != "\"" })
                })
            #expect(labels.count <= 4 && labels.contains("other"), "\(labels)")
            #expect(text.contains("spool_jobs_submitted_total{model=\"other\"}"), "models past the cap count as other")
        }
    }
}

/// An open broker (no keys) is for this machine's processes, not for web pages it has open.
extension HardeningTests {
    @Test func anOpenBrokerRefusesWhatABrowserCanSendAndClosesWhenAKeyExists() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(database: database) { broker in
                let model = uniqueModel("open")
                let submit: JSONValue = ["model": .string(model), "payload": [:]]
                // A cross-site form or fetch can POST text/plain without a preflight: not JSON, refused.
                let plain = try await HTTP.send(
                    .POST, broker.baseURL + "/v1/queue/submit", body: submit.jsonText,
                    headers: [("Content-Type", "text/plain")], contentType: nil)
                #expect(plain.status == 415 && plain["code"] == "unsupported_media_type", "\(plain.status) \(plain.json)")
                let noType = try await HTTP.send(
                    .POST, broker.baseURL + "/v1/queue/submit", body: submit.jsonText, headers: [],
                    contentType: nil)
                #expect(noType.status == 415)
                #expect(try await broker.metrics(model: model)["messages_waiting"] == 0, "nothing was stored")
                // DNS rebinding: a page at evil.example whose name now points at 127.0.0.1.
                let rebound = try await HTTP.get(broker.baseURL + "/v1/queue/metrics?model=x", headers: [("Host", "evil.example:8080")])
                #expect(rebound.status == 403 && rebound["code"] == "host_not_allowed", "\(rebound.status) \(rebound.json)")
                let crossSite = try await HTTP.get(broker.baseURL + "/v1/queue/metrics?model=x", headers: [("Origin", "https://evil.example")])
                #expect(crossSite.status == 403 && crossSite["code"] == "origin_not_allowed")
                let local = try await HTTP.get(
                    broker.baseURL + "/v1/queue/metrics?model=x", headers: [("Host", "localhost:1"), ("Origin", "http://127.0.0.1:3000")])
                #expect(local.status == 200, "\(local.json)")

                // `spool-broker keys create` on its database closes it at once, without a restart.
                try await TestDatabase.withClient(database: database) { client in
                    _ = try await Store(client: client).apiKeys.create(
                        CreateKeyRequest(name: "first", scopes: Set(KeyScope.allCases)), key: "first-key-\(UUID().uuidString)", createdBy: "cli",
                        on: client, logger: TestDatabase.logger)
                }
                try await eventually("the broker requires a key", timeout: .seconds(5)) {
                    try await broker.metrics(model: model).status == 401
                }
            }
        }
    }
}

/// Retention prunes everything that grows with use, and never a webhook still being delivered.
extension HardeningTests {
    @Test func retentionPrunesFilesAndBatchesAndSparesPendingWebhooks() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await TestDatabase.withClient(database: database) { client in
                let store = Store(client: client)
                let logger = TestDatabase.logger
                func run(_ sql: PostgresQuery) async throws { try await client.query(sql, logger: logger) }
                func count(_ sql: PostgresQuery) async throws -> Int {
                    try await client.query(sql, logger: logger).collect().first?.decode(Int.self) ?? -1
                }
                let model = uniqueModel("retain")
                var configuration = BrokerConfiguration()
                configuration.retentionSeconds = 3600

                // A job long finished whose worker returned a file; another whose webhook is still pending.
                let withFile = UUID()
                let withWebhook = UUID()
                for id in [withFile, withWebhook] {
                    try await store.jobs.insert(
                        SubmitRequest(model: model, payload: [:]), requestID: id, submittedBy: "t", on: client, logger: logger)
                }
                try await run("UPDATE jobs SET status = 'done', done_at = now() - interval '2 days' WHERE model = \(model)")
                try await store.files.create(
                    id: "file-out", filename: "out.png", purpose: "job-output", fileType: "binary", contentType: "image/png", expectedSHA256: nil,
                    uploadTokenHash: nil, owner: "t", tenant: "default", requestID: withFile, on: client, logger: logger)
                try await run(
                    """
                    INSERT INTO webhook_deliveries (webhook_id, job_id, url, body)
                    SELECT 'msg_pending', id, 'https://example.com/hook', '{}' FROM jobs WHERE request_id = \(withWebhook)
                    """)
                // A batch ended long ago, its input shared with a batch still kept; an upload never finished.
                for id in ["file-in", "file-batch-out", "file-batch-err", "file-abandoned"] {
                    try await store.files.create(
                        id: id, filename: id, purpose: "batch-api", fileType: "jsonl", contentType: "application/jsonl", expectedSHA256: nil,
                        uploadTokenHash: nil, owner: "t", tenant: "default", on: client, logger: logger)
                }
                let old = UUID()
                let kept = UUID()
                for id in [old, kept] {
                    _ = try await store.batches.create(
                        id: id, endpoint: "/v1/queue/submit", inputFileID: "file-in", modelID: nil, priority: 0, completionWindow: "24h",
                        windowSeconds: 86400, fileSizeBytes: 1, owner: "t", tenant: "default", on: client, logger: logger)
                }
                try await run(
                    """
                    UPDATE batches SET status = 'COMPLETED', completed_at = now() - interval '2 days',
                                       output_file_id = 'file-batch-out', error_file_id = 'file-batch-err'
                    WHERE id = \(old)
                    """)
                try await run("UPDATE files SET created_at = now() - interval '2 days' WHERE id = 'file-abandoned'")

                _ = try await RetentionService(store: store, configuration: configuration, schema: SchemaReadiness(), logger: logger).prune()

                #expect(try await count("SELECT count(*) FROM jobs WHERE request_id = \(withFile)") == 0)
                #expect(try await count("SELECT count(*) FROM files WHERE id = 'file-out'") == 0, "the pruned job's output went with it")
                #expect(try await count("SELECT count(*) FROM jobs WHERE request_id = \(withWebhook)") == 1, "a pending delivery keeps its job")
                #expect(try await count("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = 'msg_pending'") == 1)
                #expect(try await count("SELECT count(*) FROM batches WHERE id = \(old)") == 0)
                #expect(try await count("SELECT count(*) FROM files WHERE id IN ('file-batch-out', 'file-batch-err')") == 0)
                #expect(try await count("SELECT count(*) FROM files WHERE id = 'file-in'") == 1, "another batch still uses the input")
                #expect(try await count("SELECT count(*) FROM batches WHERE id = \(kept)") == 1)
                #expect(try await count("SELECT count(*) FROM files WHERE id = 'file-abandoned'") == 0)

                // Once delivered, the job goes at the next pass.
                try await run("UPDATE webhook_deliveries SET state = 'delivered' WHERE webhook_id = 'msg_pending'")
                _ = try await RetentionService(store: store, configuration: configuration, schema: SchemaReadiness(), logger: logger).prune()
                #expect(try await count("SELECT count(*) FROM jobs WHERE request_id = \(withWebhook)") == 0)
            }
        }
    }
}

/// A batch's input cannot crash-loop the brokers or stall other batches.
extension HardeningTests {
    static func uploadBatchFile(_ broker: BrokerProcess, _ content: String) async throws -> String {
        let boundary = "b-\(UUID().uuidString)"
        let request = SlowRequest(
            .POST, broker.baseURL + "/v1/files", headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")],
            first: ByteBuffer(string: multipartBody(boundary: boundary, content: content)), length: nil)
        request.finish()
        let answer = try await request.result.get()
        guard answer.status == 200, let id = answer["id"]?.stringValue else { throw TestFailure("upload failed: \(answer.status) \(answer.json)") }
        return id
    }

    static func createBatch(_ broker: BrokerProcess, file: String) async throws -> String {
        let created = try await HTTP.post(broker.baseURL + "/v1/batches", ["input_file_id": .string(file), "endpoint": "/v1/queue/submit"])
        guard let id = created["job"]?.objectValue?["id"]?.stringValue else { throw TestFailure("batch create failed: \(created.json)") }
        return id
    }

    static func batch(_ broker: BrokerProcess, _ id: String, reaches statuses: Set<String>) async throws -> Answer {
        var last: Answer?
        try await eventually("batch \(id) reaches \(statuses)", timeout: .seconds(60), every: .milliseconds(100)) {
            last = try await HTTP.get(broker.baseURL + "/v1/batches/\(id)")
            return statuses.contains(last?["status"]?.stringValue ?? "")
        }
        return last!
    }

    /// A line longer than the limit (here a file with no newline at all, and a long line among good
    /// ones) fails its batch naming the line, without the broker holding or rescanning it; a repeated
    /// custom id is found however far apart the lines are; other batches go on.
    @Test func badBatchInputsFailWithTheirLineAndOthersGoOn() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let broker = try await BrokerProcess.start(
                databaseURL: TestDatabase.url(database: database), arguments: ["--max-batch-line-bytes", "4096"])
            let model = uniqueModel("batch-hard")
            func line(_ id: String) -> String { #"{"custom_id": "\#(id)", "body": {"model": "\#(model)", "payload": {}}}"# }

            let noNewline = try await Self.createBatch(
                broker, file: try await Self.uploadBatchFile(broker, "{\"custom_id\": \"" + String(repeating: "x", count: 3 << 20)))
            let longLine = try await Self.createBatch(
                broker,
                file: try await Self.uploadBatchFile(broker, line("a") + "\n" + line(String(repeating: "b", count: 5000)) + "\n" + line("c") + "\n"))
            let farRepeat = try await Self.createBatch(
                broker, file: try await Self.uploadBatchFile(broker, (1...6000).map { line($0 == 5999 ? "c-3" : "c-\($0)") }.joined(separator: "\n")))
            let good = try await Self.createBatch(broker, file: try await Self.uploadBatchFile(broker, line("ok-1") + "\n" + line("ok-2") + "\n"))

            let first = try await Self.batch(broker, noNewline, reaches: ["FAILED"])
            #expect(first["error"]?.stringValue?.contains("line 1 is longer than 4096 bytes") == true, "\(first.json)")
            let second = try await Self.batch(broker, longLine, reaches: ["FAILED"])
            #expect(second["error"]?.stringValue?.contains("1 bad line") == true, "\(second.json)")
            #expect(second["error"]?.stringValue?.contains("line 2 is longer than 4096 bytes") == true, "\(second.json)")
            let third = try await Self.batch(broker, farRepeat, reaches: ["FAILED"])
            #expect(third["error"]?.stringValue?.contains("line 5999 repeats the custom_id 'c-3' of line 3") == true, "\(third.json)")
            let fourth = try await Self.batch(broker, good, reaches: ["IN_PROGRESS"])
            #expect(fourth["request_counts"]?.objectValue?["total"] == 2)
            #expect(await broker.process.stop() == 0)
        }
    }

    /// A batch whose validation keeps failing (or crashing its broker) used to be tried again on
    /// every pass of every replica, forever. After three attempts it fails with the reason, and the
    /// batches behind it go on.
    @Test func aBatchThatKeepsFailingEndsFailedAndOthersGoOn() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: database))
            let model = uniqueModel("batch-loop")
            let content = #"{"custom_id": "a", "body": {"model": "\#(model)", "payload": {}}}"# + "\n"
            let file = try await Self.uploadBatchFile(broker, content)
            // As three attempts that crashed their brokers leave it: counted, and due again.
            let stuck = UUID()
            _ = try await TestDatabase.withClient(database: database) { client in
                try await client.query(
                    """
                    INSERT INTO batches (id, endpoint, input_file_id, completion_window, job_deadline, file_size_bytes, step_attempts)
                    VALUES (\(stuck), '/v1/queue/submit', \(file), '24h', now() + interval '1 day', 1, 3)
                    """, logger: TestDatabase.logger)
            }
            let other = try await Self.createBatch(broker, file: file)
            let failed = try await Self.batch(broker, stuck.uuidString.lowercased(), reaches: ["FAILED"])
            #expect(failed["error"]?.stringValue?.hasPrefix("Validation did not finish after 3 attempts") == true, "\(failed.json)")
            _ = try await Self.batch(broker, other, reaches: ["IN_PROGRESS"])
            let jobs = try await TestDatabase.withClient(database: database) { client in
                try await client.query("SELECT count(*) FROM jobs WHERE batch_id = \(stuck)", logger: TestDatabase.logger).collect().first?.decode(
                    Int.self)
            }
            #expect(jobs == 0, "the failed batch enqueued nothing")
            #expect(await broker.process.stop() == 0)
        }
    }
}

/// The embedded cluster starts as Spool means it to, whatever state a crash left it in.
extension HardeningTests {
    @Test func theEmbeddedClusterIsSocketOnlyAfterAnyCrashAndRecoversFromAStalePIDFile() async throws {
        let directory = "/tmp/spool-embedded-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cluster = directory + "/postgres"
        try FileManager.default.createDirectory(atPath: cluster, withIntermediateDirectories: true)
        let user: String? = getuid() == 0 ? "postgres" : nil
        if let user, let account = getpwnam(user) { chown(cluster, account.pointee.pw_uid, account.pointee.pw_gid) }
        chmod(cluster, 0o700)
        // A broker killed between initdb and writing its settings leaves this behind.
        let bin = try EmbeddedPostgres.findBinDirectory()
        try EmbeddedPostgres.run(
            binDirectory: bin, "initdb", ["-D", cluster, "-U", EmbeddedPostgres.username, "--auth=trust", "--encoding=UTF8", "--locale=C"],
            as: user, in: cluster)

        func settings() async throws -> (String, String) {
            let embedded = try EmbeddedPostgres(dataDirectory: directory, maxConnections: 20, logger: TestDatabase.logger)
            defer { embedded.stop() }
            let client = PostgresClient(configuration: embedded.configuration, backgroundLogger: TestDatabase.logger)
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                let listen = try await client.query("SHOW listen_addresses", logger: TestDatabase.logger).collect().first?.decode(String.self)
                let socket = try await client.query("SHOW unix_socket_directories", logger: TestDatabase.logger).collect().first?.decode(String.self)
                return (listen ?? "?", socket ?? "?")
            }
        }
        let (listen, socket) = try await settings()
        #expect(listen == "", "no TCP listener: \(listen)")
        #expect(socket == cluster)

        // After a crash the pid file may name a process that is not PostgreSQL at all (here: this one).
        let pidFile = "\(getpid())\n\(cluster)\n0\n5432\n\(cluster)\n\n"
        try pidFile.write(toFile: cluster + "/postmaster.pid", atomically: true, encoding: .utf8)
        let (again, _) = try await settings()
        #expect(again == "")
    }

    /// `spool-worker` trusts the CA bundle named by SSL_CERT_FILE, as curl and Python do.
    @Test func aWorkerTrustsTheCABundleInSSLCertFile() async throws {
        let certificate = try await TestCertificate.make()
        let broker = try await BrokerProcess.start(
            databaseURL: TestDatabase.url(database: TestDatabase.migrated()),
            arguments: ["--api-key", Self.key, "--tls-cert", certificate.certificatePath, "--tls-key", certificate.keyPath])
        let model = uniqueModel("tls-env")
        let handler = "\(PythonScript.interpreter) \(SpawnedProcess.packageRoot)/Tests/sdk/exec_handler.py"
        let worker = try await WorkerProcess.start(
            brokers: [broker], models: [model], arguments: ["--api-key", Self.key, "--exec", handler],
            environment: ["SSL_CERT_FILE": certificate.certificatePath])
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.additionalTrustRoots = [.file(certificate.certificatePath)]
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: .init(tlsConfiguration: tls))
        func call(_ method: HTTPMethod, _ path: String, _ body: JSONValue? = nil) async throws -> JSONValue {
            var request = HTTPClientRequest(url: broker.baseURL + path)
            request.method = method
            request.headers.add(name: "Authorization", value: "Bearer \(Self.key)")
            if let body {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(string: body.jsonText))
            }
            let response = try await client.execute(request, timeout: .seconds(30))
            return try JSONValue.parse(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        }
        let submitted = try await call(.POST, "/v1/queue/submit", ["model": .string(model), "payload": ["n": 1]])
        let id = try #require(submitted.objectValue?["requestId"]?.stringValue)
        try await eventually("the worker runs the job over TLS") {
            let status = try await call(
                .GET, "/v1/queue/status?model=\(model.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&request_id=\(id)")
            return status.objectValue?["status"] == "done"
        }
        try await client.shutdown()
        #expect(await worker.process.stop() == 0)
        #expect(await broker.process.stop() == 0)
    }
}
