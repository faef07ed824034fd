import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import SpoolCore
import SpoolWorker
import Testing

@testable import SpoolStore

/// The files store: Together's upload flow and its refusals, fenced worker uploads, and a large
/// file from an `--exec` handler streamed through broker and worker to the client.
extension HeavyTests {
    @Suite struct FileTests {
        struct Raw {
            var status: Int
            var headers: HTTPHeaders
            var body: ByteBuffer
            var json: JSONValue? { try? JSONValue.parse(body.readableBytesView) }
        }

        static func send(_ method: HTTPMethod, _ url: String, body: ByteBuffer? = nil, headers: [(String, String)] = []) async throws -> Raw {
            var request = HTTPClientRequest(url: url)
            request.method = method
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            if let body { request.body = .bytes(body) }
            let response = try await noRedirects.execute(request, timeout: .seconds(60))
            return Raw(status: Int(response.status.code), headers: response.headers, body: try await response.body.collect(upTo: 16 << 20))
        }

        /// Redirects are answers under test here, not to be followed.
        static let noRedirects = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: .init(redirectConfiguration: .disallow))

        static func sha256(_ text: String) -> String {
            SHA256.hash(data: Data(text.utf8)).map { String(format: "%02x", $0) }.joined()
        }

        @Test func togethersUploadFlowRefusesBadTokensChecksumsAndOversizedFiles() async throws {
            try await withTestBroker({ $0.maxFileBytes = 4096 }) { broker in
                let base = broker.baseURL
                let content = "{\"custom_id\": \"a\", \"body\": {}}\n"
                let boundary = "b-\(UUID().uuidString)"
                let form =
                    "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n"
                    + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file_name\"\r\n\r\nin.jsonl\r\n"
                    + "--\(boundary)\r\nContent-Disposition: form-data; name=\"checksum\"\r\n\r\n\(Self.sha256(content))\r\n--\(boundary)--\r\n"
                let created = try await Self.send(
                    .POST, base + "/v1/files", body: ByteBuffer(string: form),
                    headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")])
                #expect(created.status == 302, "\(String(buffer: created.body))")
                let location = try #require(created.headers.first(name: "Location"))
                let fileID = try #require(created.headers.first(name: "X-Together-File-Id"))
                #expect(location.hasPrefix(base + "/v1/files/\(fileID)/upload?token="))

                // The wrong token: nothing to upload to.
                let wrongToken = try await Self.send(.PUT, base + "/v1/files/\(fileID)/upload?token=nope", body: ByteBuffer(string: content))
                #expect(wrongToken.status == 404 && wrongToken.json?.objectValue?["code"] == "upload_not_found")
                // Content that is not what the checksum announced: refused, nothing kept.
                let corrupted = try await Self.send(.PUT, location, body: ByteBuffer(string: content + " "))
                #expect(
                    corrupted.status == 400 && corrupted.json?.objectValue?["code"] == "checksum_mismatch",
                    "\(corrupted.status) \(String(buffer: corrupted.body))")
                let notYet = try await broker.call(.get, "/v1/files/\(fileID)/content")
                #expect(notYet.status == 409 && notYet["code"] == "file_not_ready")
                // Over the broker's file limit: 413, nothing kept.
                let oversized = try await Self.send(.PUT, location, body: ByteBuffer(string: String(repeating: "x", count: 5000)))
                #expect(oversized.status == 413 && oversized.json?.objectValue?["code"] == "payload_too_large")
                // The right content: stored, and the upload URL is spent.
                let stored = try await Self.send(.PUT, location, body: ByteBuffer(string: content))
                #expect(stored.status == 200 && stored.json?.objectValue?["bytes"] == .int(Int64(content.utf8.count)))
                let again = try await Self.send(.PUT, location, body: ByteBuffer(string: content))
                #expect(again.status == 404)
                let preprocessed = try await broker.post("/v1/files/\(fileID)/preprocess", [:])
                #expect(
                    preprocessed["processing_status"] == "COMPLETED" && preprocessed["FileType"] == "jsonl" && preprocessed["filename"] == "in.jsonl")
                let downloaded = try await Self.send(.GET, base + "/v1/files/\(fileID)/content")
                #expect(String(buffer: downloaded.body) == content)

                // Bad requests: no multipart, no purpose, an unknown purpose.
                let notMultipart = try await broker.post("/v1/files", ["purpose": "batch-api"])
                #expect(notMultipart.status == 400 && notMultipart["code"] == "invalid_content_type")
                let noPurpose = try await Self.send(
                    .POST, base + "/v1/files", body: ByteBuffer(string: "--\(boundary)--\r\n"),
                    headers: [("Content-Type", "multipart/form-data; boundary=\(boundary)")])
                #expect(
                    noPurpose.status == 400 && noPurpose.json?.objectValue?["param"] == "purpose",
                    "\(noPurpose.status) \(String(buffer: noPurpose.body))")
                let unknownBatchFile = try await broker.post("/v1/batches", ["input_file_id": "file-none", "endpoint": "/v1/queue/submit"])
                #expect(unknownBatchFile.status == 404)
                let badEndpoint = try await broker.post("/v1/batches", ["input_file_id": .string(fileID), "endpoint": "/v1/embeddings"])
                #expect(badEndpoint.status == 400 && badEndpoint["param"] == "endpoint")
                let badWindow = try await broker.post(
                    "/v1/batches", ["input_file_id": .string(fileID), "endpoint": "/v1/queue/submit", "completion_window": "soon"])
                #expect(badWindow.status == 400 && badWindow["param"] == "completion_window")
            }
        }

        @Test func aWorkerUploadWithALostLeaseIsRefusedAndStoresNothing() async throws {
            try await withTestBroker { broker in
                let model = uniqueModel("file-fence")
                let requestID = try await broker.submit(model: model)
                let leased = try #require(try await broker.lease(models: [model]).first?.objectValue)
                let token = try #require(leased["lease_token"]?.stringValue)
                let url = broker.baseURL + "/v1/worker/jobs/\(requestID)/files?name=out.png&lease_token="
                let good = try await Self.send(.POST, url + token, body: ByteBuffer(string: "png bytes"), headers: [("Content-Type", "image/png")])
                #expect(good.status == 201)
                let file = try #require(good.json?.objectValue)
                #expect(file["file_size"] == .int(9) && file["content_type"] == "image/png" && file["file_name"] == "out.png")
                let fileURL = try #require(file["url"]?.stringValue)
                #expect(String(buffer: try await Self.send(.GET, fileURL).body) == "png bytes")

                let stale = try await Self.send(.POST, url + UUID().uuidString, body: ByteBuffer(string: "late bytes"))
                #expect(stale.status == 409 && stale.json?.objectValue?["code"] == "lease_lost")
                let files = try await TestDatabase.withStore { store in
                    try await store.files.list(limit: 1000, tenant: nil, on: store.client, logger: TestDatabase.logger).filter {
                        $0.requestID?.uuidString.lowercased() == requestID
                    }
                }
                #expect(files.count == 1, "only the fenced upload stored a file")
            }
        }

        @Test func anExecHandlersLargeFileReachesTheClientByteForByteWithLittleMemory() async throws {
            let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: TestDatabase.migrated()))
            let model = uniqueModel("file-large")
            let handler = "\(PythonScript.interpreter) \(SpawnedProcess.packageRoot)/Tests/sdk/exec_handler.py"
            let worker = try await WorkerProcess.start(brokers: [broker], models: [model], arguments: ["--exec", handler])
            let size: Int64 = 200 << 20
            let requestID = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "file", "bytes": .int(size), "seed": 7])
            var status: Answer?
            try await eventually("the job is done", timeout: .seconds(180), every: .milliseconds(200)) {
                status = try await HTTP.status(broker: broker, model: model, requestID: requestID)
                return status?["status"] == "done" || status?["status"] == "failed"
            }
            let outputs = try #require(status?["outputs"]?.objectValue, "\(String(describing: status?.json))")
            // The output named the file; it now holds the file's object in its place.
            let video = try #require(outputs["video"]?.objectValue, "\(outputs)")
            #expect(video["file_size"] == .int(size) && video["file_name"] == "video.bin")
            #expect(outputs["files"] == .array([.object(video)]))

            var hasher = SHA256()
            var received: Int64 = 0
            let response = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: try #require(video["url"]?.stringValue)), timeout: .seconds(120))
            #expect(response.status == .ok)
            for try await piece in response.body {
                piece.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                received += Int64(piece.readableBytes)
            }
            #expect(received == size)
            let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
            #expect(.string(digest) == outputs["sha256"], "the client got the handler's bytes")

            // Peak resident memory of each process, far below the file's 200 MiB.
            for (name, pid) in [("broker", broker.process.pid), ("worker", worker.process.pid)] {
                let peak = try Self.peakResidentKiB(pid)
                print("\(name) peak RSS while moving a 200 MiB file: \(peak / 1024) MiB")
                #expect(peak < 128 * 1024, "\(name) peaked at \(peak / 1024) MiB")
            }
            #expect(await worker.process.stop() == 0)
            #expect(await broker.process.stop() == 0)
        }

        /// A Swift handler returns a file: `context.upload` stores it and its object goes in the outputs.
        @Test func aSwiftHandlerReturnsAFileOutput() async throws {
            struct Painter: JobHandler {
                func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] {
                    let path = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(job.requestID).png").path
                    try Data("a picture of \(job.requestID)".utf8).write(to: URL(fileURLWithPath: path))
                    defer { try? FileManager.default.removeItem(atPath: path) }
                    return ["image": try await context.upload(fileAt: path, name: "picture.png"), "seed": 4]
                }
            }
            let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: TestDatabase.migrated()))
            let model = uniqueModel("file-swift")
            let configuration = WorkerConfiguration(brokerURLs: [broker.baseURL], models: [model])
            let worker = try Worker(configuration: configuration, handler: Painter(), logger: TestDatabase.logger)
            let running = Task { try await worker.run() }
            let requestID = try await HTTP.submit(broker: broker, model: model)
            var status: Answer?
            try await eventually("the job is done", timeout: .seconds(30)) {
                status = try await HTTP.status(broker: broker, model: model, requestID: requestID)
                return status?["status"] == "done"
            }
            running.cancel()
            _ = try? await running.value
            let image = try #require(status?["outputs"]?.objectValue?["image"]?.objectValue, "\(String(describing: status?.json))")
            #expect(image["content_type"] == "image/png" && image["file_name"] == "picture.png")
            let content = try await HTTP.text(try #require(image["url"]?.stringValue))
            #expect(content == "a picture of \(requestID)")
            #expect(await broker.process.stop() == 0)
        }

        /// An upload the broker refuses (here: over its file limit) fails the attempt as retryable; the job is never done without its file.
        @Test func aJobWhoseFileUploadFailsIsRetriedNotDone() async throws {
            let broker = try await BrokerProcess.start(
                databaseURL: TestDatabase.url(database: TestDatabase.migrated()), arguments: ["--max-file-bytes", "2048", "--retry-limit", "2"])
            let model = uniqueModel("file-refused")
            let handler = "\(PythonScript.interpreter) \(SpawnedProcess.packageRoot)/Tests/sdk/exec_handler.py"
            let worker = try await WorkerProcess.start(brokers: [broker], models: [model], arguments: ["--exec", handler])
            let requestID = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "file", "bytes": 4096])
            var status: Answer?
            try await eventually("the job has failed", timeout: .seconds(60)) {
                status = try await HTTP.status(broker: broker, model: model, requestID: requestID)
                #expect(status?["status"] != "done", "done without its file: \(String(describing: status?.json))")
                return status?["status"] == "failed"
            }
            #expect(status?["retries"] == .int(2), "\(String(describing: status?.json))")
            #expect(status?["error"]?.stringValue?.contains("could not be uploaded") == true, "\(String(describing: status?.json))")
            #expect(await worker.process.stop() == 0)
            #expect(await broker.process.stop() == 0)
        }

        static func peakResidentKiB(_ pid: pid_t) throws -> Int {
            let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
                let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
            else { throw TestFailure("no VmHWM for \(pid)") }
            return kib
        }
    }
}
