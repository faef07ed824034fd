import Foundation
import HTTPTypes
import SpoolCore
import SpoolStore
import Testing

@testable import SpoolBroker

/// RunPod's serverless protocols: unmodified `runpod` workers and the `runpod` client SDK (1.12.0
/// from PyPI) against a live broker, and the edges of the routes by hand.
@Suite struct RunPodTests {
    @Test func runpodWorkersAndClientFromPyPI() async throws {
        let key = "runpod-\(UUID().uuidString)"
        let secret = "whsec_" + Data("a runpod test secret of 32 bytes".utf8).base64EncodedString()
        // A database of its own: the script counts the endpoint's jobs and workers.
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let broker = try await BrokerProcess.start(
                databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", key, "--runpod-ping-seconds", "1"],
                environment: ["SPOOL_WEBHOOK_SECRET": secret, "SPOOL_WEBHOOK_ALLOW_LOOPBACK": "1"])
            let (status, output) = try await PythonScript.run(
                "runpod_client.py",
                environment: [
                    "RUNPOD_ENDPOINT_BASE_URL": broker.baseURL + "/v2", "SPOOL_BROKER_URL": broker.baseURL, "SPOOL_KEY": key,
                    "SPOOL_ENDPOINT": "runpod/\(UUID().uuidString.prefix(8).lowercased())",
                    "SPOOL_BROKER_BIN": SpawnedProcess.buildDirectory + "/spool-broker",
                    "SPOOL_WORKER_BIN": SpawnedProcess.buildDirectory + "/spool-worker", "SPOOL_WEBHOOK_SECRET": secret,
                    "TOGETHER_BASE_URL": broker.baseURL, "TOGETHER_API_KEY": key,
                ],
                timeout: .seconds(300))
            #expect(status == 0, "runpod script failed:\n\(output)\nthe broker said:\n\(broker.process.output.suffix(6000))")
            #expect(output.contains("passed"), "\(output)")
            #expect(await broker.process.stop() == 0, "\(broker.process.output.suffix(4000))")
        }
    }

    @Test func pathsAreReadFromTheEndSoEndpointIdsMayHoldSlashes() {
        func parse(_ method: HTTPRequest.Method, _ path: String) -> RunPodPath? {
            RunPodPath.parse(method: method, segments: path.split(separator: "/", omittingEmptySubsequences: false))
        }
        #expect(parse(.post, "acme/sd/run") == RunPodPath(endpoint: "acme/sd", action: .run))
        #expect(parse(.post, "sd/runsync") == RunPodPath(endpoint: "sd", action: .runSync))
        #expect(parse(.get, "acme/sd/status/abc") == RunPodPath(endpoint: "acme/sd", action: .status("abc")))
        #expect(parse(.get, "a/b/c/stream/x") == RunPodPath(endpoint: "a/b/c", action: .stream("x")))
        #expect(parse(.post, "acme/sd/cancel/x") == RunPodPath(endpoint: "acme/sd", action: .cancel("x")))
        #expect(parse(.get, "acme/sd/job-take/pod-1") == RunPodPath(endpoint: "acme/sd", action: .take(worker: "pod-1")))
        #expect(parse(.get, "acme/sd/job-take-batch/pod-1") == RunPodPath(endpoint: "acme/sd", action: .takeBatch(worker: "pod-1")))
        #expect(parse(.get, "acme/sd/job-stop/pod-1") == RunPodPath(endpoint: "acme/sd", action: .stop(worker: "pod-1")))
        #expect(parse(.get, "acme/sd/ping/run") == RunPodPath(endpoint: "acme/sd", action: .ping(worker: "run")))
        #expect(parse(.post, "acme/sd/job-done/pod-1/j") == RunPodPath(endpoint: "acme/sd", action: .done(worker: "pod-1", job: "j")))
        #expect(parse(.post, "acme/sd/job-stream/pod-1/j") == RunPodPath(endpoint: "acme/sd", action: .streamChunk(worker: "pod-1", job: "j")))
        // The method decides: a GET of run, a POST of status, no endpoint, an empty part.
        #expect(parse(.get, "acme/sd/run") == nil)
        #expect(parse(.post, "acme/sd/status/x") == nil)
        #expect(parse(.post, "run") == nil)
        #expect(parse(.post, "acme//run") == nil)
        #expect(parse(.delete, "acme/sd/cancel/x") == nil)
        // Parts are read percent-decoded: a control character is refused however it is written, as is a broken escape.
        #expect(parse(.get, "%12%C2%AC/ping/w") == nil)
        #expect(parse(.post, "a%ZZ/run") == nil)
        #expect(parse(.post, "acme%2Fsd/run") == nil, "one segment is one part of the endpoint id")
        #expect(parse(.post, "a%C2%A0b/run") == nil, "a no-break space is white space")
        #expect(parse(.post, "caf%C3%A9/run") == RunPodPath(endpoint: "café", action: .run))
    }

    @Test func runpodEnvPrintsWhatAWorkerNeeds() async throws {
        let env = try RunPodEnvironment(endpoint: "acme/sd", brokerURL: "https://spool.internal:8443/", apiKey: "k1", pingSeconds: 5, podID: "pod-7")
        #expect(
            env.lines == [
                "RUNPOD_WEBHOOK_GET_JOB=https://spool.internal:8443/v2/acme/sd/job-take/$ID?",
                "RUNPOD_WEBHOOK_POST_OUTPUT=https://spool.internal:8443/v2/acme/sd/job-done/$RUNPOD_POD_ID/$ID?",
                "RUNPOD_WEBHOOK_POST_STREAM=https://spool.internal:8443/v2/acme/sd/job-stream/$RUNPOD_POD_ID/$ID?",
                "RUNPOD_WEBHOOK_PING=https://spool.internal:8443/v2/acme/sd/ping/$RUNPOD_POD_ID?", "RUNPOD_PING_INTERVAL=5000",
                "RUNPOD_AI_API_KEY=k1", "RUNPOD_POD_ID=pod-7", "RUNPOD_ENDPOINT_ID=acme/sd", "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true",
                "RUNPOD_SKIP_GPU_CHECK=true",
            ])
        #expect(throws: ConfigurationError.self) { try RunPodEnvironment(endpoint: "acme//sd", brokerURL: "http://b", apiKey: "k") }
        #expect(throws: ConfigurationError.self) { try RunPodEnvironment(endpoint: "acme/sd", brokerURL: "ftp://b", apiKey: "k") }
        #expect(throws: ConfigurationError.self) {
            try RunPodEnvironment(endpoint: "acme/sd", brokerURL: "http://b", apiKey: "k", pingSeconds: 0.5)
        }
        // The command prints the same lines; a bad argument exits non-zero and says why.
        let command = try SpawnedProcess([
            SpawnedProcess.buildDirectory + "/spool-broker", "runpod-env", "--endpoint", "acme/sd", "--broker-url", "http://127.0.0.1:8080",
            "--api-key", "k2",
        ])
        #expect(try await command.wait(timeout: .seconds(30)) == 0)
        #expect(command.output.contains("RUNPOD_WEBHOOK_GET_JOB=http://127.0.0.1:8080/v2/acme/sd/job-take/$ID?\n"), "\(command.output)")
        #expect(command.output.contains("RUNPOD_POD_ID=spool-"), "\(command.output)")
        let refused = try SpawnedProcess([
            SpawnedProcess.buildDirectory + "/spool-broker", "runpod-env", "--endpoint", "acme/sd", "--broker-url", "nope", "--api-key", "k",
        ])
        #expect(try await refused.wait(timeout: .seconds(30)) != 0)
        #expect(refused.output.contains("not an http(s) URL"), "\(refused.output)")
    }

    /// A job's stream chunks: fenced by the lease token, bounded in count and bytes, read once each, in order.
    @Test func streamChunksAreFencedBoundedAndReadOnce() async throws {
        try await TestDatabase.withStore { store in
            let logger = TestDatabase.logger
            let model = "runpod/chunks-\(UUID().uuidString.prefix(8))"
            try await store.jobs.insert(
                SubmitRequest(model: model, payload: [:]), requestID: UUID(), submittedBy: "test", on: store.client, logger: logger)
            let job = try #require(
                try await store.jobs.claim(
                    models: [model], limit: 1, leaseSeconds: 30, maxRunSeconds: 60, workerID: "w", on: store.client, logger: logger
                ).first)
            func append(_ chunk: JSONValue, token: UUID? = nil, maxChunks: Int = 10, maxBytes: Int64 = 1000) async throws -> StreamAppendOutcome {
                try await store.streamChunks.append(
                    requestID: job.requestID, leaseToken: token ?? job.leaseToken, chunk: chunk, maxChunks: maxChunks, maxBytes: maxBytes,
                    on: store.client, logger: logger)
            }
            #expect(try await append("a") == .appended(seq: 1))
            #expect(try await append("b") == .appended(seq: 2))
            #expect(try await append("c", token: UUID()) == .refused(.leaseLost(status: .running, attempt: 1)))
            // 3 chunks allowed: a fourth is refused and stores nothing; so is one past the bytes.
            #expect(try await append("c", maxChunks: 3) == .appended(seq: 3))
            #expect(try await append("d", maxChunks: 3) == .full)
            #expect(try await append(.string(String(repeating: "x", count: 990))) == .full)
            #expect(try await store.streamChunks.takeUnread(jobID: job.id, on: store.client, logger: logger) == ["a", "b", "c"])
            #expect(try await append("e") == .appended(seq: 4))
            #expect(try await store.streamChunks.takeUnread(jobID: job.id, on: store.client, logger: logger) == ["e"])
            #expect(try await store.streamChunks.takeUnread(jobID: job.id, on: store.client, logger: logger) == [])
        }
    }

    /// Scopes, tenants and fencing on the /v2 routes, spoken by hand.
    @Test func routesKeepScopesTenantsAndFencing() async throws {
        let adminKey = "admin-\(UUID().uuidString)"
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(database: database, { $0.apiKeys = [adminKey] }) { broker in
                let admin = broker.withKey(adminKey)
                let acme = try await TenantTests.client(admin, tenant: "acme")
                let globex = try await TenantTests.client(admin, tenant: "globex")
                let worker = admin.withKey(try await KeyScopeTests.createKey(admin, ["name": "w", "scopes": ["worker"], "models": ["rp/*"]]).key)
                let otherWorker = admin.withKey(
                    try await KeyScopeTests.createKey(admin, ["name": "o", "scopes": ["worker"], "models": ["other/*"]]).key)
                let endpoint = "rp/edges"

                let run = try await acme.post("/v2/\(endpoint)/run", ["input": ["prompt": "x"]])
                #expect(run.status == 200 && run["status"]?.stringValue == "IN_QUEUE", "\(run.json)")
                let id = try #require(run["id"]?.stringValue)
                // Another tenant's id reads exactly as an unknown one.
                let unknown = "00000000-0000-0000-0000-000000000000"
                for path in ["status", "stream"] {
                    let theirs = try await globex.call(.get, "/v2/\(endpoint)/\(path)/\(id)")
                    let none = try await globex.call(.get, "/v2/\(endpoint)/\(path)/\(unknown)")
                    #expect(theirs.status == 404 && none.status == 404)
                    #expect(theirs.json.jsonText == none.json.jsonText.replacingOccurrences(of: unknown, with: id), "\(theirs.json)")
                }
                #expect(try await globex.post("/v2/\(endpoint)/cancel/\(id)", [:]).status == 404)
                #expect(try await globex.post("/v2/\(endpoint)/purge-queue", [:])["removed"] == 0)
                #expect(try await acme.call(.get, "/v2/\(endpoint)/status/\(id)")["status"]?.stringValue == "IN_QUEUE")

                // A client key cannot take; a worker key only takes its models; a bare key is accepted.
                #expect(try await acme.call(.get, "/v2/\(endpoint)/job-take/p1?").status == 403)
                #expect(try await otherWorker.call(.get, "/v2/\(endpoint)/job-take/p1?").status == 403)
                let bare = admin.withKey(nil)
                let take = try await bare.call(.get, "/v2/\(endpoint)/job-take/p1?&job_in_progress=0", headers: [.authorization: worker.apiKey!])
                #expect(take.status == 200, "\(take.json)")
                let attempt = try #require(take["id"]?.stringValue)
                #expect(attempt.hasPrefix(id + ".") && take["input"] == ["prompt": "x"], "\(take.json)")

                // The worker's result is JSON sent form-encoded; a token the job does not hold is refused.
                let form: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]
                let forged = "\(id).\(UUID().uuidString.lowercased())"
                let stale = try await worker.call(
                    .post, "/v2/\(endpoint)/job-done/p1/\(forged)?&isStream=false", body: #"{"output": 1}"#, headers: form)
                #expect(stale.status == 409 && stale["code"]?.stringValue == "lease_lost", "\(stale.json)")
                let chunk = try await worker.call(.post, "/v2/\(endpoint)/job-stream/p1/\(forged)?", body: #"{"output": 1}"#, headers: form)
                #expect(chunk.status == 409, "\(chunk.json)")
                #expect(try await worker.call(.post, "/v2/\(endpoint)/job-done/p1/not-an-id?", body: "{}", headers: form).status == 404)
                let notJSON = try await worker.call(.post, "/v2/\(endpoint)/job-done/p1/\(attempt)?", body: "output=1", headers: form)
                #expect(notJSON.status == 400, "\(notJSON.json)")
                // Form-encoded bodies are the worker's result routes' only: a client's run must be JSON.
                #expect(try await acme.call(.post, "/v2/\(endpoint)/run", body: #"{"input": {}}"#, headers: form).status == 415)

                let done = try await worker.call(
                    .post, "/v2/\(endpoint)/job-done/p1/\(attempt)?&isStream=false", body: #"{"output": {"ok": true}}"#, headers: form)
                #expect(done.status == 200 && done["status"]?.stringValue == "COMPLETED", "\(done.json)")
                let again = try await worker.call(
                    .post, "/v2/\(endpoint)/job-done/p1/\(attempt)?&isStream=false", body: #"{"output": {"ok": true}}"#, headers: form)
                #expect(again.status == 200 && again.headers[.idempotentReplayed] == "true", "a repeated result is a replay")
                let late = try await worker.call(
                    .post, "/v2/\(endpoint)/job-done/p1/\(attempt)?", body: #"{"status": "IN_PROGRESS", "output": 0.5}"#, headers: form)
                #expect(late.status == 200 && late["ignored"] != nil, "progress after the result is ignored: \(late.json)")
                let completed = try await acme.call(.get, "/v2/\(endpoint)/status/\(id)")
                #expect(completed["status"]?.stringValue == "COMPLETED" && completed["output"] == ["ok": true], "\(completed.json)")
                let together = try await acme.status(model: endpoint, requestID: id)
                #expect(together["outputs"] == ["output": ["ok": true]], "the same job through Spool's API: \(together.json)")
            }
        }
    }
}
