import Foundation
import SpoolCore
import Testing

/// The `spool` command line against a live broker process.
@Suite(.serialized) struct CommandLineTests {
    let key = "cli-test-key-\(UUID().uuidString)"

    func spool(_ arguments: [String], broker: BrokerProcess?, stdin: String? = nil) async throws -> (status: Int32, output: String) {
        var environment = ["SPOOL_API_KEY": key]
        environment["SPOOL_BROKER_URL"] = try broker?.baseURL ?? "http://127.0.0.1:\(freePort())"
        let process = try SpawnedProcess([SpawnedProcess.buildDirectory + "/spool"] + arguments, environment: environment)
        return (try await process.wait(timeout: .seconds(120)), process.output)
    }

    /// `spool keys` and `spool audit` over the admin API, on a database of its own (its keys would
    /// close other tests' open brokers).
    @Test func keysAreManagedOverTheAdminAPI() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", key])
            let created = try await spool(
                ["keys", "create", "--name", "gpu-fleet", "--scopes", "worker", "--models", "acme/*,beta/video", "--json"], broker: broker)
            #expect(created.status == 0, "\(created.output)")
            let record = try JSONValue.parse(created.output).objectValue ?? [:]
            let id = try #require(record["id"]?.stringValue)
            #expect(record["key"]?.stringValue?.hasPrefix("spool_") == true && record["models"] == ["acme/*", "beta/video"])
            let bad = try await spool(["keys", "create", "--name", "x", "--scopes", "root"], broker: broker)
            #expect(bad.status != 0 && bad.output.contains("Unknown scope 'root'"), "\(bad.output)")

            let list = try await spool(["keys", "list"], broker: broker)
            #expect(list.status == 0 && list.output.contains(id) && list.output.contains("acme/*,beta/video"), "\(list.output)")
            #expect(!list.output.contains(record["key"]?.stringValue ?? "-"), "a list never shows a key")

            let revoked = try await spool(["keys", "revoke", id], broker: broker)
            #expect(revoked.status == 0 && revoked.output.contains("revoked \(id)"))
            #expect(try await spool(["keys", "revoke", id], broker: broker).status == 2)
            // `spool-broker keys` works on the database itself, with no broker.
            let url = TestDatabase.url(database: database)
            let admin = try SpawnedProcess(
                [
                    SpawnedProcess.buildDirectory + "/spool-broker", "keys", "create", "--name", "web", "--scopes", "client", "--expires", "1h",
                    "--database-url", url,
                ])
            #expect(try await admin.wait(timeout: .seconds(60)) == 0, "\(admin.output)")
            let clientKey = try #require(admin.output.split(separator: "\n").first { $0.hasPrefix("key: ") }.map { String($0.dropFirst(5)) })
            #expect(admin.output.contains("scopes: client") && admin.output.contains("expires_at: "), "\(admin.output)")
            let listed = try SpawnedProcess([SpawnedProcess.buildDirectory + "/spool-broker", "keys", "list", "--database-url", url])
            #expect(try await listed.wait(timeout: .seconds(60)) == 0 && listed.output.contains("\tweb\tclient\t"), "\(listed.output)")
            let model = uniqueModel("cli-scoped")
            let asClient = try await HTTP.submit(broker: broker, model: model, headers: [("Authorization", "Bearer \(clientKey)")])
            #expect(UUID(uuidString: asClient) != nil)
            let workers = try await HTTP.get(broker.baseURL + "/v1/workers", headers: [("Authorization", "Bearer \(clientKey)")])
            #expect(workers.status == 403 && workers["code"] == "insufficient_scope")

            let audit = try await spool(["audit"], broker: broker)
            #expect(audit.output.contains("key.created") && audit.output.contains("key.revoked") && audit.output.contains(id), "\(audit.output)")
            #expect(await broker.process.stop() == 0)
        }
    }

    @Test func submitStatusMetricsCancelClearWatchWorkers() async throws {
        let broker = try await BrokerProcess.start(
            databaseURL: TestDatabase.url(database: TestDatabase.migrated()), arguments: ["--api-key", key])
        let model = uniqueModel("cli")

        let one = try await spool(["submit", "--model", model, "--payload", #"{"prompt": "spool"}"#, "--priority", "5"], broker: broker)
        #expect(one.status == 0, "\(one.output)")
        let id = one.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(UUID(uuidString: id) != nil, "\(one.output)")

        // Many from a JSONL file: bare payloads and full submit requests, with a progress bar.
        let file = NSTemporaryDirectory() + "spool-jobs-\(UUID().uuidString.prefix(8)).jsonl"
        let lines = (0..<40).map { #"{"prompt": "job \#($0)"}"# } + (0..<10).map { #"{"payload": {"prompt": "hi \#($0)"}, "priority": 1}"# }
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        let many = try await spool(["submit", "--model", model, "--file", file, "--json"], broker: broker)
        #expect(many.status == 0, "\(many.output)")
        #expect(many.output.contains("50/50"))
        // Standard error (the progress bar) and output share the capture: the JSON starts on its own line.
        let jsonStart = try #require(many.output.range(of: "\n[\n"))
        let ids = try JSONValue.parse(String(many.output[jsonStart.lowerBound...])).arrayValue ?? []
        #expect(ids.count == 50)

        let status = try await spool(["status", id, "--model", model, "--json"], broker: broker)
        #expect(status.status == 0)
        let statusJSON = try JSONValue.parse(status.output).objectValue
        #expect(statusJSON?["status"] == "pending" && statusJSON?["priority"] == 5 && statusJSON?["queue_position"] == 0, "\(status.output)")
        let text = try await spool(["status", id, "--model", model], broker: broker)
        #expect(
            text.output.contains("pending") && text.output.contains("queue position 0") && text.output.contains("warning: No live worker"),
            "\(text.output)")

        try await eventually("the metrics table lists the model") {
            let table = try await spool(["metrics"], broker: broker)
            return table.status == 0 && table.output.contains("MODEL") && table.output.contains(model)
        }
        let metrics = try await spool(["metrics", "--model", model, "--json"], broker: broker)
        #expect(try JSONValue.parse(metrics.output) == ["messages_waiting": 51, "messages_running": 0, "total_jobs": 51])

        let cancel = try await spool(["cancel", try #require(ids.last?.stringValue), "--model", model], broker: broker)
        #expect(cancel.status == 0 && cancel.output.contains("canceled"))
        let unknown = try await spool(["cancel", UUID().uuidString, "--model", model], broker: broker)
        #expect(unknown.status == 2)
        #expect(unknown.output.contains("job_not_found"))

        // A worker runs the first job (the highest priority); watch follows it to the end.
        let worker = try await WorkerProcess.start(
            brokers: [broker], models: [model],
            arguments: ["--exec", "\(PythonScript.interpreter) \(SpawnedProcess.packageRoot)/Examples/handler.py", "--api-key", key])
        let watch = try await spool(["watch", id, "--model", model], broker: broker)
        #expect(watch.status == 0, "\(watch.output)")
        #expect(watch.output.contains("running"))
        #expect(watch.output.contains("progress"))
        #expect(watch.output.contains("reversed 5 characters"))
        #expect(watch.output.contains(#"outputs {"text":"loops"}"#))
        let workers = try await spool(["workers"], broker: broker)
        #expect(workers.status == 0 && workers.output.contains("WORKER") && workers.output.contains(model))
        #expect(await worker.process.stop() == 0)

        // The job list, a page at a time, filtered: the watched job is among the done ones.
        let firstPage = try await spool(["jobs", "--model", model, "--limit", "2"], broker: broker)
        #expect(
            firstPage.status == 0 && firstPage.output.contains("REQUEST ID") && firstPage.output.contains("more: --cursor i"), "\(firstPage.output)")
        let done = try await spool(["jobs", "--model", model, "--status", "done", "--json"], broker: broker)
        let doneRows = try JSONValue.parse(done.output).objectValue?["data"]?.arrayValue ?? []
        #expect(doneRows.contains { $0.objectValue?["request_id"] == .string(id) }, "\(done.output)")
        #expect(doneRows.allSatisfy { $0.objectValue?["status"] == "done" && $0.objectValue?["model"] == .string(model) })
        // Requeue takes failed jobs only: a done one is refused with the broker's reason.
        let refused = try await spool(["requeue", id, "--model", model], broker: broker)
        #expect(refused.status == 2 && refused.output.contains("job_not_failed"), "\(refused.output)")

        let clear = try await spool(["clear", "--model", model, "--json"], broker: broker)
        #expect(clear.status == 0)
        let cleared = try JSONValue.parse(clear.output).objectValue?["canceled_count"]
        #expect(cleared.flatMap { if case .int(let n) = $0 { n } else { nil } }.map { $0 >= 40 && $0 <= 49 } == true, "\(clear.output)")
        #expect(await broker.process.stop() == 0)
    }

    @Test func exitCodesSayWhatWentWrong() async throws {
        let unreachable = try await spool(["metrics", "--model", "m"], broker: nil)
        #expect(unreachable.status == 3)
        #expect(unreachable.output.contains("Cannot reach the broker"))
        let usage = try await spool(["submit", "--model", "m"], broker: nil)
        #expect(usage.status == 64)
        #expect(usage.output.contains("--payload"))
        let broker = try await BrokerProcess.start(
            databaseURL: TestDatabase.url(database: TestDatabase.migrated()), arguments: ["--api-key", key])
        let badPayload = try await spool(["submit", "--model", "m", "--payload", "[1]"], broker: broker)
        #expect(badPayload.status == 64)
        let failed = try await spool(["watch", UUID().uuidString, "--model", "m"], broker: broker)
        #expect(failed.status == 2)
        #expect(await broker.process.stop() == 0)
    }
}
