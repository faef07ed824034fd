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
        #expect(text.output.contains("pending") && text.output.contains("queue position 0") && text.output.contains("warning: No live worker"), "\(text.output)")

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
