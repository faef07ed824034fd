import AsyncHTTPClient
import Foundation
import NIOCore
import SpoolCore
import Testing

@testable import SpoolStore

/// Batches against broker and worker processes: the together SDK's whole flow, expiry and cancel
/// with partial results, and brokers killed while a batch validates or runs.
extension HeavyTests {
    @Suite struct BatchTests {
        static let handler = "\(PythonScript.interpreter) \(SpawnedProcess.packageRoot)/Tests/sdk/exec_handler.py"

        @Test func theTogetherSDKUploadsRunsAndDownloadsABatch() async throws {
            let key = "batch-key-\(UUID().uuidString)"
            let broker = try await BrokerProcess.start(
                databaseURL: TestDatabase.url(database: TestDatabase.migrated()), arguments: ["--api-key", key])
            let model = uniqueModel("batch-sdk")
            let chatModel = uniqueModel("batch-chat")
            let worker = try await WorkerProcess.start(
                brokers: [broker], models: [model], arguments: ["--exec", Self.handler, "--concurrency", "4", "--api-key", key])
            let server = try SpawnedProcess([PythonScript.interpreter, "-u", SpawnedProcess.packageRoot + "/Tests/sdk/echo_server.py"])
            let port = try await server.waitForOutput(matching: #"listening on (\d+)"#)
            let forwarder = try await WorkerProcess.start(
                brokers: [broker], models: [chatModel],
                arguments: ["--forward", "http://127.0.0.1:\(port)/v1/chat/completions", "--api-key", key])
            let workdir = FileManager.default.temporaryDirectory.appendingPathComponent("spool-batch-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: workdir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: workdir) }
            let (status, output) = try await PythonScript.run(
                "together_batches.py",
                environment: [
                    "TOGETHER_BASE_URL": broker.baseURL, "TOGETHER_API_KEY": key, "SPOOL_MODEL": model, "SPOOL_CHAT_MODEL": chatModel,
                    "SPOOL_LINES": "40",
                    "SPOOL_WORKDIR": workdir,
                ])
            #expect(status == 0, "together SDK batch script failed:\n\(output)")
            #expect(output.contains("together SDK files and batches passed"), "\(output)")
            #expect(await worker.process.stop() == 0)
            #expect(await forwarder.process.stop() == 0)
            await server.stop(signal: SIGKILL)
            #expect(await broker.process.stop() == 0)
        }

        @Test func anExpiredBatchCancelsWhatIsLeftAndKeepsWhatFinished() async throws {
            let (broker, worker, model) = try await Self.brokerAndWorker("batch-expire")
            // Lines 1–3 finish at once; 4–5 run until stopped and take both slots; 6–7 wait behind them.
            let id = try await Self.createBatch(broker, lines: Self.mixedLines(model: model), window: "6s")
            let batch = try await Self.waitForBatch(broker, id, until: ["EXPIRED"], timeout: .seconds(60))
            #expect(Self.number(batch["progress"]) == 100)
            let outputs = try await Self.lines(broker, batch["output_file_id"])
            let errors = try await Self.lines(broker, batch["error_file_id"])
            #expect(outputs.compactMap { $0["custom_id"]?.stringValue }.sorted() == ["ok-1", "ok-2", "ok-3"])
            #expect(errors.compactMap { $0["custom_id"]?.stringValue }.sorted() == ["hang-4", "hang-5", "late-6", "late-7"])
            #expect(errors.allSatisfy { $0["error"]?.objectValue?["code"] == .string("batch_expired") }, "\(errors)")
            #expect(batch["request_counts"]?.objectValue?["failed"] == .int(4))
            #expect(await worker.process.stop() == 0)
            #expect(await broker.process.stop() == 0)
        }

        @Test func aCanceledBatchShowsCancellingThenKeepsPartialResults() async throws {
            let (broker, worker, model) = try await Self.brokerAndWorker("batch-cancel")
            let id = try await Self.createBatch(broker, lines: Self.mixedLines(model: model), window: "1h")
            // Wait until the quick lines are done and the slow ones run.
            try await eventually("three lines finished", timeout: .seconds(30)) {
                let batch = try await HTTP.get(broker.baseURL + "/v1/batches/\(id)")
                return Self.number(batch["progress"]) >= 300.0 / 7 - 0.1
            }
            let canceled = try await HTTP.post(broker.baseURL + "/v1/batches/\(id)/cancel", [:])
            #expect(canceled.status == 200)
            #expect(canceled["status"] == "CANCELLING", "running lines are still stopping: \(canceled.json)")
            let batch = try await Self.waitForBatch(broker, id, until: ["CANCELLED"], timeout: .seconds(60))
            let outputs = try await Self.lines(broker, batch["output_file_id"])
            let errors = try await Self.lines(broker, batch["error_file_id"])
            #expect(outputs.compactMap { $0["custom_id"]?.stringValue }.sorted() == ["ok-1", "ok-2", "ok-3"])
            #expect(errors.compactMap { $0["custom_id"]?.stringValue }.sorted() == ["hang-4", "hang-5", "late-6", "late-7"])
            #expect(errors.allSatisfy { $0["error"]?.objectValue?["code"] == .string("batch_cancelled") }, "\(errors)")
            let again = try await HTTP.post(broker.baseURL + "/v1/batches/\(id)/cancel", [:])
            #expect(again.status == 409 && again["code"] == "batch_ended", "\(again.json)")
            #expect(await worker.process.stop() == 0)
            #expect(await broker.process.stop() == 0)
        }

        @Test func aBrokerKilledMidBatchIsRestartedAndEveryLineIsAnsweredOnce() async throws {
            try await TestDatabase.withFreshDatabase(migrated: true) { database in
                let url = TestDatabase.url(database: database)
                let port = try freePort()
                var broker = try await BrokerProcess.start(databaseURL: url, port: port)
                let model = uniqueModel("batch-restart")
                let worker = try await WorkerProcess.start(
                    brokers: [broker], models: [model], arguments: ["--exec", Self.handler, "--concurrency", "4"])
                let count = 40
                // Each run of a line appends its number here: how many times each line really ran.
                let record = FileManager.default.temporaryDirectory.appendingPathComponent("spool-runs-\(UUID().uuidString)").path
                defer { try? FileManager.default.removeItem(atPath: record) }
                let lines = (1...count).map { n -> JSONValue in
                    let payload: JSONValue = ["mode": "sleep", "seconds": 0.3, "n": .int(Int64(n)), "record": .string(record)]
                    return ["custom_id": .string("line-\(n)"), "body": ["model": .string(model), "payload": payload]]
                }
                let id = try await Self.createBatch(broker, lines: lines, window: "1h")
                try await eventually("the batch is under way", timeout: .seconds(30)) {
                    Self.number(try await HTTP.get(broker.baseURL + "/v1/batches/\(id)")["progress"]) > 0
                }
                broker.process.signal(SIGKILL)
                _ = try await broker.process.wait(timeout: .seconds(10))
                broker = try await BrokerProcess.start(databaseURL: url, port: port)
                let batch = try await Self.waitForBatch(broker, id, until: ["COMPLETED"], timeout: .seconds(90))
                let outputs = try await Self.lines(broker, batch["output_file_id"])
                let ids = outputs.compactMap { $0["custom_id"]?.stringValue }
                #expect(ids.count == count && Set(ids).count == count, "every line answered exactly once: \(ids.sorted())")
                // A claim whose answer died with the broker shows as attempt 2 (its lease expired unrun); it still ran once.
                let runs = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n").map(String.init)
                #expect(runs.count == count && Set(runs).count == count, "no line ran twice: \(runs.sorted())")
                #expect(await worker.process.stop() == 0)
                #expect(await broker.process.stop() == 0)
            }
        }

        /// SIGKILL while the lines are being enqueued, and again while the output files are being
        /// written: each time the restarted broker redoes the step whole, and nothing is doubled.
        @Test func aBrokerKilledWhileValidatingOrFinalisingRedoesTheStepWhole() async throws {
            try await TestDatabase.withFreshDatabase(migrated: true) { database in
                let url = TestDatabase.url(database: database)
                let port = try freePort()
                var broker = try await BrokerProcess.start(databaseURL: url, port: port)
                let model = uniqueModel("batch-validate")
                let count = 30_000
                let lines = (1...count).map { n -> JSONValue in
                    ["custom_id": .string("v\(n)"), "body": ["model": .string(model), "payload": ["n": .int(Int64(n))]]]
                }
                let id = try await Self.createBatch(broker, lines: lines, window: "1h")
                // Mid-validation: lines are being enqueued in the transaction that holds the batch.
                try await Self.waitForWrites(to: "jobs", database: database)
                broker.process.signal(SIGKILL)
                _ = try await broker.process.wait(timeout: .seconds(10))
                let afterKill = try await Self.batchJobs(database: database, id)
                #expect(afterKill == 0, "a killed validation enqueued \(afterKill) lines")
                try await Self.endStepBackoff(database: database, id)
                broker = try await BrokerProcess.start(databaseURL: url, port: port)
                let batch = try await Self.waitForBatch(broker, id, until: ["IN_PROGRESS"], timeout: .seconds(90))
                #expect(batch["request_counts"]?.objectValue?["total"] == .int(Int64(count)))
                #expect(try await Self.batchJobs(database: database, id) == count)

                // No worker serves the model: a cancel ends every line at once, and the error file of 30,000 lines is written.
                let canceled = try await HTTP.post(broker.baseURL + "/v1/batches/\(id)/cancel", [:])
                #expect(canceled.status == 200)
                try await Self.waitForWrites(to: "files", database: database)
                broker.process.signal(SIGKILL)
                _ = try await broker.process.wait(timeout: .seconds(10))
                #expect(try await Self.batchFiles(database: database, id) == 0, "a killed finalisation left files behind")
                try await Self.endStepBackoff(database: database, id)
                broker = try await BrokerProcess.start(databaseURL: url, port: port)
                let ended = try await Self.waitForBatch(broker, id, until: ["CANCELLED"], timeout: .seconds(90))
                #expect(ended["output_file_id"]?.stringValue != nil)
                let errors = try await Self.lines(broker, ended["error_file_id"])
                #expect(errors.count == count && Set(errors.compactMap { $0["custom_id"]?.stringValue }).count == count)
                #expect(try await Self.batchFiles(database: database, id) == 2, "one output file and one error file")
                #expect(await broker.process.stop() == 0)
            }
        }

        /// Waits until some transaction in `database` holds a write lock on `table`: a step is under way.
        static func waitForWrites(to table: String, database: String) async throws {
            try await eventually("a transaction writes to \(table)", timeout: .seconds(30), every: .milliseconds(10)) {
                try await TestDatabase.withClient(database: database) { client in
                    try await client.query(
                        """
                        SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                        WHERE c.relname = \(table) AND l.mode = 'RowExclusiveLock'
                          AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                          AND l.pid <> pg_backend_pid()
                        """
                    ).collect().count > 0
                }
            }
        }

        /// Ends the killed attempt's backoff (10 s, doubled per attempt): the restarted broker redoes
        /// the step at once. The step's attempt count is kept; the backoff is not what these tests are about.
        static func endStepBackoff(database: String, _ id: String) async throws {
            try await TestDatabase.withClient(database: database) { client in
                _ = try await client.query("UPDATE batches SET step_retry_at = now() WHERE id = \(UUID(uuidString: id)!)").collect()
            }
        }

        static func batchFiles(database: String, _ id: String) async throws -> Int {
            try await TestDatabase.withClient(database: database) { client in
                try await client.query("SELECT count(*) FROM files WHERE filename LIKE \("batch-\(id)-%")").collect().first?.decode(Int.self) ?? -1
            }
        }

        // MARK: helpers

        static func number(_ value: JSONValue?) -> Double {
            switch value {
            case .int(let n): Double(n)
            case .double(let n): n
            default: -1
            }
        }

        static func brokerAndWorker(_ name: String) async throws -> (BrokerProcess, WorkerProcess, String) {
            let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: TestDatabase.migrated()))
            let model = uniqueModel(name)
            // A short lease: the worker hears "stop" within a couple of seconds.
            let worker = try await WorkerProcess.start(
                brokers: [broker], models: [model], arguments: ["--exec", handler, "--concurrency", "2", "--lease-seconds", "6"])
            return (broker, worker, model)
        }

        /// Three quick lines, two that run until stopped, two that wait behind them.
        static func mixedLines(model: String) -> [JSONValue] {
            func line(_ id: String, _ payload: JSONValue) -> JSONValue {
                ["custom_id": .string(id), "body": ["model": .string(model), "payload": payload]]
            }
            return [
                line("ok-1", ["n": 1]), line("ok-2", ["n": 2]), line("ok-3", ["n": 3]),
                line("hang-4", ["mode": "sleep", "seconds": 600]), line("hang-5", ["mode": "sleep", "seconds": 600]),
                line("late-6", ["n": 6]), line("late-7", ["n": 7]),
            ]
        }

        /// Uploads `lines` as a JSONL file (plain multipart) and creates a batch of it; returns its id.
        static func createBatch(_ broker: BrokerProcess, lines: [JSONValue], window: String) async throws -> String {
            let content: String = lines.map { (line: JSONValue) -> String in line.jsonText }.joined(separator: "\n") + "\n"
            let boundary = "spool-test-\(UUID().uuidString)"
            var body: String = "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n"
            body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"lines.jsonl\"\r\n"
            body += "Content-Type: application/jsonl\r\n\r\n"
            body += content
            body += "\r\n--\(boundary)--\r\n"
            var request = HTTPClientRequest(url: broker.baseURL + "/v1/files")
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
            request.body = .bytes(ByteBuffer(string: body))
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            let file = try JSONValue.parse(try await response.body.collect(upTo: 1 << 20).readableBytesView)
            guard response.status.code == 200, let fileID = file.objectValue?["id"]?.stringValue else {
                throw TestFailure("upload failed: \(response.status) \(file)")
            }
            let created = try await HTTP.post(
                broker.baseURL + "/v1/batches",
                ["input_file_id": .string(fileID), "endpoint": "/v1/queue/submit", "completion_window": .string(window)])
            guard created.status == 201, let id = created["job"]?.objectValue?["id"]?.stringValue else {
                throw TestFailure("batch create failed: \(created.status) \(created.json)")
            }
            return id
        }

        static func waitForBatch(_ broker: BrokerProcess, _ id: String, until statuses: Set<String>, timeout: Duration) async throws -> Answer {
            var last: Answer?
            try await eventually(
                "batch \(id) reaches \(statuses) (last: \(String(describing: last?.json)))", timeout: timeout, every: .milliseconds(200)
            ) {
                last = try await HTTP.get(broker.baseURL + "/v1/batches/\(id)")
                return statuses.contains(last?["status"]?.stringValue ?? "")
            }
            return last!
        }

        /// The JSON lines of a file, downloaded through the files API.
        static func lines(_ broker: BrokerProcess, _ fileID: JSONValue?) async throws -> [[String: JSONValue]] {
            guard let fileID = fileID?.stringValue else { return [] }
            let text = try await HTTP.text(broker.baseURL + "/v1/files/\(fileID)/content")
            return try text.split(separator: "\n").map { try JSONValue.parse(String($0)).objectValue ?? [:] }
        }

        static func batchJobs(database: String, _ id: String) async throws -> Int {
            try await TestDatabase.withClient(database: database) { client in
                try await client.query("SELECT count(*) FROM jobs WHERE batch_id = \(UUID(uuidString: id)!)").collect().first?.decode(Int.self) ?? -1
            }
        }
    }
}
