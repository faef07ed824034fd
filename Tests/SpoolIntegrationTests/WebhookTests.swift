import Foundation
import SpoolCore
import Testing

@testable import SpoolStore

#if canImport(Glibc)
import Glibc
#endif

/// Signed webhooks from the durable outbox, checked by the `standardwebhooks` package from PyPI.
/// Each test has its own database: a sender delivers every due delivery it sees.
@Suite(.serialized) struct WebhookTests {
    static let secret = "whsec_" + Data("spool test webhook secret 32 b!!".utf8).base64EncodedString()

    /// A webhook receiver process (Tests/sdk/webhook_receiver.py) and the deliveries it logged.
    struct Receiver {
        let process: SpawnedProcess
        let port: Int
        let log: String

        static func start(failFirst: Int = 0, port: Int = 0) async throws -> Receiver {
            let log = NSTemporaryDirectory() + "spool-webhooks-\(UUID().uuidString.prefix(8)).jsonl"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let process = try SpawnedProcess(
                [PythonScript.interpreter, "-u", SpawnedProcess.packageRoot + "/Tests/sdk/webhook_receiver.py", log, "\(failFirst)"],
                environment: ["SPOOL_WEBHOOK_SECRET": WebhookTests.secret, "SPOOL_RECEIVER_PORT": "\(port)"])
            let port = Int(try await process.waitForOutput(matching: #"listening on (\d+)"#))!
            return Receiver(process: process, port: port, log: log)
        }

        var deliveries: [[String: JSONValue]] {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            return text.split(separator: "\n").compactMap { try? JSONValue.parse(String($0)).objectValue }
        }

        func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }
    }

    static func broker(database: String, delays: String = "0,0.5,0.5,0.5", port: Int = 0) async throws -> BrokerProcess {
        try await BrokerProcess.start(
            databaseURL: TestDatabase.url(database: database), port: port,
            environment: [
                "SPOOL_WEBHOOK_SECRET": secret, "SPOOL_WEBHOOK_ALLOW_LOOPBACK": "1", "SPOOL_WEBHOOK_RETRY_DELAYS": delays,
            ])
    }

    /// Submits a job with a webhook and runs it to `done` through the worker protocol by hand.
    static func runJob(_ broker: BrokerProcess, model: String, webhook: String) async throws -> String {
        let submitted = try await HTTP.post(
            broker.baseURL + "/v1/queue/submit", ["model": .string(model), "payload": ["p": 1], "webhook_url": .string(webhook)])
        guard let id = submitted["requestId"]?.stringValue else { throw TestFailure("submit failed: \(submitted.json)") }
        let lease = try await HTTP.post(broker.baseURL + "/v1/worker/lease", ["worker_id": "w", "models": [.string(model)]])
        guard let token = lease["jobs"]?.arrayValue?.first?.objectValue?["lease_token"] else { throw TestFailure("no lease: \(lease.json)") }
        let done = try await HTTP.post(broker.baseURL + "/v1/worker/jobs/\(id)/complete", ["lease_token": token, "outputs": ["answer": 42]])
        guard done.status == 200 else { throw TestFailure("complete failed: \(done.json)") }
        return id
    }

    @Test func aReceiverThatFailsFirstGetsTheEventOnceAfterRetries() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let receiver = try await Receiver.start(failFirst: 2)
            let broker = try await Self.broker(database: database)
            let model = uniqueModel("hook")
            let id = try await Self.runJob(broker, model: model, webhook: receiver.url("/fail"))
            try await eventually("the third attempt succeeds and is recorded") {
                try await HTTP.status(broker: broker, model: model, requestID: id)["webhook"]?.objectValue?["state"] == "delivered"
            }
            let deliveries = receiver.deliveries
            #expect(deliveries.map { $0["answer"] } == [500, 500, 200])
            #expect(Set(deliveries.compactMap { $0["webhook_id"]?.stringValue }).count == 1, "one webhook-id across retries")
            #expect(deliveries.allSatisfy { $0["verified"] == true }, "every attempt verifies: \(deliveries)")
            #expect(Set(deliveries.compactMap { $0["body"]?.stringValue }).count == 1, "the same bytes every attempt")
            let body = try JSONValue.parse(try #require(deliveries.last?["body"]?.stringValue))
            #expect(body.objectValue?["type"] == "job.done")
            #expect(body.objectValue?["data"]?.objectValue?["request_id"] == .string(id))
            #expect(body.objectValue?["data"]?.objectValue?["model"] == .string(model))
            #expect(body.objectValue?["data"]?.objectValue?["outputs"] == ["answer": 42])

            // The status shows the delivery; the metrics count the failed attempts.
            let status = try await HTTP.status(broker: broker, model: model, requestID: id)
            let webhook = try #require(status["webhook"]?.objectValue)
            #expect(webhook["state"] == "delivered")
            #expect(webhook["attempts"] == 3)
            #expect(webhook["last_status_code"] == 200)
            #expect(webhook["webhook_id"] == deliveries.last?["webhook_id"])
            let metrics = try await HTTP.text(broker.baseURL + "/metrics")
            #expect(metrics.contains(#"spool_webhook_deliveries_total{outcome="failed"} 2"#), "\(metrics)")
            #expect(metrics.contains(#"spool_webhook_deliveries_total{outcome="delivered"} 1"#))

            // Delivered is final: no further attempt comes, so the event arrived exactly once.
            #expect(receiver.deliveries.count == 3)

            let (verified, output) = try await PythonScript.run(
                "webhook_verify.py", arguments: [receiver.log], environment: ["SPOOL_WEBHOOK_SECRET": Self.secret])
            #expect(verified == 0, "\(output)")
            #expect(output.contains("standardwebhooks verification passed"), "\(output)")
            #expect(await broker.process.stop() == 0)
            await receiver.process.stop(signal: SIGKILL)
        }
    }

    /// A broker killed with a delivery pending delivers it after a restart: the outbox is in PostgreSQL.
    @Test func aKilledBrokerDeliversAfterRestart() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let port = try freePort()
            let broker = try await Self.broker(database: database, delays: "0,3")
            let model = uniqueModel("hook")
            // Nothing listens yet: the first attempt fails, the next is 3 s away.
            let id = try await Self.runJob(broker, model: model, webhook: "http://127.0.0.1:\(port)/hook")
            // Recorded, not just begun: a broker killed mid-attempt leaves the delivery leased for a minute.
            try await eventually("the first attempt's failure is recorded") {
                let webhook = try await HTTP.status(broker: broker, model: model, requestID: id)["webhook"]?.objectValue
                return webhook?["attempts"] == 1 && webhook?["last_error"] != .null && webhook?["last_error"] != nil
            }
            broker.process.signal(SIGKILL)
            _ = await broker.process.stop()
            let receiver = try await Receiver.start(port: port)
            let restarted = try await Self.broker(database: database, delays: "0,3")
            try await eventually("the delivery arrives after the restart") { receiver.deliveries.contains { $0["answer"] == 200 } }
            #expect(receiver.deliveries.count == 1)
            #expect(receiver.deliveries.first?["verified"] == true)
            // The receiver logs before it answers: the broker records the answer a moment later.
            try await eventually("the delivery is recorded") {
                try await HTTP.status(broker: restarted, model: model, requestID: id)["webhook"]?.objectValue?["state"] == "delivered"
            }
            #expect(try await HTTP.status(broker: restarted, model: model, requestID: id)["webhook"]?.objectValue?["attempts"] == 2)
            #expect(await restarted.process.stop() == 0)
            await receiver.process.stop(signal: SIGKILL)
        }
    }

    @Test func a410StopsRetriesAndFalWebhooksGetFalsBody() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let receiver = try await Receiver.start()
            let broker = try await Self.broker(database: database)
            let model = uniqueModel("hook")
            let gone = try await Self.runJob(broker, model: model, webhook: receiver.url("/gone"))
            try await eventually("the 410 is recorded") {
                try await HTTP.status(broker: broker, model: model, requestID: gone)["webhook"]?.objectValue?["state"] == "gone"
            }
            #expect(receiver.deliveries.count == 1)

            // fal_webhook: fal's body, ERROR for a failed request.
            let hook = receiver.url("/fal").addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let submitted = try await HTTP.post(broker.baseURL + "/fal/\(model)?fal_webhook=\(hook)", ["prompt": "x"])
            let id = try #require(submitted["request_id"]?.stringValue)
            let lease = try await HTTP.post(broker.baseURL + "/v1/worker/lease", ["worker_id": "w", "models": [.string(model)]])
            let token = try #require(lease["jobs"]?.arrayValue?.first?.objectValue?["lease_token"])
            _ = try await HTTP.post(broker.baseURL + "/v1/worker/jobs/\(id)/fail", ["lease_token": token, "error": "NSFW filter"])
            try await eventually("the fal webhook arrives") { receiver.deliveries.contains { $0["path"] == "/fal" } }
            let delivery = try #require(receiver.deliveries.first { $0["path"] == "/fal" })
            #expect(delivery["verified"] == true)
            let body = try JSONValue.parse(try #require(delivery["body"]?.stringValue)).objectValue
            #expect(body?["request_id"] == .string(id))
            #expect(body?["status"] == "ERROR")
            #expect(body?["error"] == "NSFW filter")
            #expect(body?["payload"] == .null)
            #expect(await broker.process.stop() == 0)
            await receiver.process.stop(signal: SIGKILL)
        }
    }

    /// A receiver that answers its head and then trickles its body used to hold the sender's whole
    /// group of attempts forever. Each attempt has one deadline now and none waits for another.
    @Test func aSlowReceiverHoldsUpNoOtherDelivery() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let receiver = try await Receiver.start()
            let broker = try await BrokerProcess.start(
                databaseURL: TestDatabase.url(database: database),
                environment: [
                    "SPOOL_WEBHOOK_SECRET": Self.secret, "SPOOL_WEBHOOK_ALLOW_LOOPBACK": "1", "SPOOL_WEBHOOK_RETRY_DELAYS": "0,1,60",
                    "SPOOL_WEBHOOK_ATTEMPT_TIMEOUT": "2",
                ])
            let model = uniqueModel("hook")
            let slow = try await Self.runJob(broker, model: model, webhook: receiver.url("/slow"))
            try await eventually("the slow receiver is trickling its answer") { receiver.deliveries.contains { $0["path"] == "/slow" } }
            let fast = try await Self.runJob(broker, model: model, webhook: receiver.url("/fast"))
            try await eventually("the other delivery arrives while the slow one trickles", timeout: .seconds(10)) {
                try await HTTP.status(broker: broker, model: model, requestID: fast)["webhook"]?.objectValue?["state"] == "delivered"
            }
            // The slow attempt is abandoned at its deadline and tried again on schedule.
            try await eventually("the slow attempt is abandoned and retried", timeout: .seconds(20)) {
                receiver.deliveries.filter { $0["path"] == "/slow" }.count >= 2
            }
            let webhook = try #require(try await HTTP.status(broker: broker, model: model, requestID: slow)["webhook"]?.objectValue)
            #expect(webhook["state"] == "pending")
            #expect(webhook["last_error"] == "The receiver did not answer in full within 2 s.", "\(webhook)")
            #expect(await broker.process.stop() == 0)
            await receiver.process.stop(signal: SIGKILL)
        }
    }

    /// Refusals and failed attempts say what went wrong in words that map nothing: no address a
    /// name resolved to, no raw connection error.
    @Test func refusalsAndFailuresRevealNoAddresses() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(database: database, { $0.webhookSecret = Self.secret }) { broker in
                let refused = try await broker.post(
                    "/v1/queue/submit", ["model": "m", "payload": [:], "webhook_url": "http://localhost:9/hook"])
                let message = try #require(refused["message"]?.stringValue)
                #expect(refused.status == 400 && message.contains("loopback"), "\(refused.json)")
                #expect(!message.contains("127.0.0.1") && !message.contains("::1"), "the resolved address leaks: \(message)")
            }
            let port = try freePort()
            let broker = try await Self.broker(database: database, delays: "0,60")
            let model = uniqueModel("hook")
            let id = try await Self.runJob(broker, model: model, webhook: "http://127.0.0.1:\(port)/nobody")
            try await eventually("the failed attempt is recorded") {
                let webhook = try await HTTP.status(broker: broker, model: model, requestID: id)["webhook"]?.objectValue
                return webhook?["attempts"] == 1 && webhook?["last_error"] != .null
            }
            let webhook = try #require(try await HTTP.status(broker: broker, model: model, requestID: id)["webhook"]?.objectValue)
            #expect(webhook["last_error"] == "The receiver refused the connection.", "\(webhook)")
            #expect(await broker.process.stop() == 0)
        }
    }

    @Test func unsafeTargetsAreRefusedAtSubmit() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(
                database: database,
                {
                    $0.webhookSecret = Self.secret
                    $0.webhookAllowedNetworks = ["10.1.0.0/16"]
                }
            ) { broker in
                let model = uniqueModel()
                for (url, code, words) in [
                    ("http://127.0.0.1:9/hook", "webhook_target_refused", "loopback"),
                    ("http://localhost:9/hook", "webhook_target_refused", "loopback"),
                    ("http://[::1]/hook", "webhook_target_refused", "loopback"),
                    ("http://10.0.0.7/hook", "webhook_target_refused", "private"),
                    ("http://192.168.1.1/hook", "webhook_target_refused", "private"),
                    ("http://169.254.169.254/latest/meta-data", "webhook_target_refused", "link-local"),
                    ("http://[fe80::1]/hook", "webhook_target_refused", "link-local"),
                    ("http://[::ffff:169.254.169.254]/", "webhook_target_refused", "link-local"),
                    ("ftp://example.com/hook", "invalid_webhook_url", "http"),
                    ("not a url", "invalid_webhook_url", "http"),
                ] {
                    let answer = try await broker.post(
                        "/v1/queue/submit", ["model": .string(model), "payload": [:], "webhook_url": .string(url)])
                    #expect(answer.status == 400, "\(url)")
                    #expect(answer["code"] == .string(code), "\(url): \(answer.json)")
                    #expect(answer["param"] == "webhook_url")
                    #expect(answer["message"]?.stringValue?.contains(words) == true, "\(url): \(answer.json)")
                }
                let fal = try await broker.post("/fal/\(model)?fal_webhook=http%3A%2F%2F127.0.0.1%2Fhook", ["prompt": "x"])
                #expect(fal.status == 400 && fal["param"] == "fal_webhook" && fal["detail"] != nil)
                // A named private network is allowed; nothing was stored for the refused ones.
                let allowed = try await broker.post(
                    "/v1/queue/submit", ["model": .string(model), "payload": [:], "webhook_url": "http://10.1.2.3/hook"])
                #expect(allowed.status == 200)
                #expect(try await broker.metrics(model: model)["messages_waiting"] == 1)
            }
            try await withTestBroker(database: database) { broker in
                let answer = try await broker.post(
                    "/v1/queue/submit", ["model": "m", "payload": [:], "webhook_url": "https://example.com/hook"])
                #expect(answer.status == 400 && answer["code"] == "webhooks_disabled")
            }
        }
    }
}

/// Whether a failed delivery is tried again is decided by the database's clock, whatever the
/// broker's says: a broker whose clock is hours off neither gives up early nor retries forever.
@Suite struct WebhookRetryPeriodTests {
    @Test func aRetryPastTheRetryPeriodGivesUpByTheDatabasesClock() async throws {
        try await TestDatabase.withFreshStore { store in
            let logger = TestDatabase.logger
            /// A delivery on its first attempt, created `age` ago by the database's clock.
            func delivery(age: String) async throws -> DueDelivery {
                let webhookID = "msg_\(UUID().uuidString.lowercased())"
                let row = try await store.client.query(
                    """
                    WITH job AS (INSERT INTO jobs (request_id, model, payload) VALUES (\(UUID()), 'm', '{}') RETURNING id)
                    INSERT INTO webhook_deliveries (webhook_id, job_id, url, body, attempts, created_at)
                    SELECT \(webhookID), job.id, 'https://receiver.example/hook', '{}', 1, now() - \(age)::interval FROM job
                    RETURNING id
                    """, logger: logger
                ).collect().first?.decode(Int64.self)
                // The broker's idea of the creation time is far off: only the database's counts.
                return DueDelivery(
                    id: try #require(row), webhookID: webhookID, url: "https://receiver.example/hook", body: "{}", attempt: 1,
                    createdAt: Date().addingTimeInterval(365 * 86400))
            }
            let failed = DeliveryResult.failed(statusCode: 500, error: "The receiver answered 500.", retryAfterSeconds: 60)
            let old = try await delivery(age: "2 hours")
            #expect(try await store.webhookDeliveries.record(failed, of: old, retrySeconds: 3600, on: store.client, logger: logger) == "failed")
            let young = try await delivery(age: "10 minutes")
            #expect(try await store.webhookDeliveries.record(failed, of: young, retrySeconds: 3600, on: store.client, logger: logger) == "pending")
            let next = try await store.client.query(
                "SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM webhook_deliveries WHERE id = \(young.id)", logger: logger
            ).collect().first?.decode(Double.self)
            #expect(next.map { $0 > 50 && $0 <= 60 } == true, "next attempt in \(String(describing: next)) s")
        }
    }
}
