import Foundation
import HTTPTypes
import Logging
import SpoolBroker
import SpoolCore
import SpoolWorker
import Synchronization
import Testing

@testable import SpoolStore

/// Live status streams, queue positions, logs on status, and cooperative cancel of running jobs.
@Suite struct StatusStreamTests {
    @Test func aTogetherStreamFollowsAJobUntilItEnds() async throws {
        // A running job is re-read (and a quiet stream woken) only after ten minutes: what arrives sooner, NOTIFY carried.
        try await withTestBroker({
            $0.streamRereadSeconds = 600
            $0.streamKeepAliveSeconds = 600
        }) { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let query = "model=\(model.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!)&request_id=\(id)"
            let stream = EventStream(url: broker.baseURL + "/v1/queue/status/stream?\(query)&logs=1")
            try await eventually("the first event") { stream.dataEvents.count == 1 }
            #expect(stream.status == 200)
            #expect(stream.contentType == "text/event-stream")
            #expect(stream.dataEvents[0].objectValue?["status"] == "pending")
            #expect(stream.dataEvents[0].objectValue?["queue_position"] == 0)

            let job = try #require(try await broker.lease(models: [model]).first)
            try await eventually("the running event") { stream.dataEvents.last?.objectValue?["status"] == "running" }
            _ = try await broker.write("heartbeat", job: job, ["info": ["progress": 0.5], "logs": ["halfway"]])
            try await eventually("the progress event") { stream.dataEvents.last?.objectValue?["info"]?.objectValue?["progress"] == 0.5 }
            #expect(stream.dataEvents.last?.objectValue?["logs"]?.arrayValue?.first?.objectValue?["message"] == "halfway")

            _ = try await broker.write("complete", job: job, ["outputs": ["ok": true]])
            try await eventually("the stream ends after the final event") { stream.ended }
            #expect(stream.dataEvents.last?.objectValue?["status"] == "done")
            #expect(stream.dataEvents.last?.objectValue?["outputs"] == ["ok": true])
            // One event per change: no two consecutive events are the same.
            let texts = stream.dataEvents.map(\.jsonText)
            #expect(zip(texts, texts.dropFirst()).allSatisfy { $0 != $1 })
            try await eventually("the stream is closed on the broker") { broker.openStreams() == 0 }
        }
    }

    @Test func aQuietStreamSendsKeepAlives() async throws {
        try await withTestBroker({ $0.streamKeepAliveSeconds = 0.3 }) { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let stream = EventStream(url: broker.baseURL + "/fal/\(model)/requests/\(id)/status/stream")
            try await eventually("two keep-alive comments") { stream.events.filter { $0.comment == ": keep-alive" }.count >= 2 }
            #expect(stream.dataEvents.count == 1)
            #expect(stream.dataEvents.first?.objectValue?["status"] == "IN_QUEUE")
            stream.cancel()
        }
    }

    @Test func aFalStreamEndsAfterCompleted() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let submitted = try await broker.post("/fal/\(model)/edit", ["prompt": "x"])
            #expect(submitted.status == 200)
            let id = try #require(submitted["request_id"]?.stringValue)
            #expect(submitted["queue_position"] == 0)
            #expect(submitted.headers[HTTPField.Name("X-Fal-Request-Id")!] == id)
            let stream = EventStream(url: broker.baseURL + "/fal/\(model)/requests/\(id)/status/stream?logs=1")
            try await eventually("IN_QUEUE") { stream.dataEvents.last?.objectValue?["status"] == "IN_QUEUE" }
            let job = try #require(try await broker.lease(models: [model]).first)
            #expect(job.objectValue?["path"] == "edit")
            try await eventually("IN_PROGRESS") { stream.dataEvents.last?.objectValue?["status"] == "IN_PROGRESS" }
            _ = try await broker.write("complete", job: job, ["outputs": ["images": []], "logs": ["done"]])
            try await eventually("the stream ends") { stream.ended }
            let last = try #require(stream.dataEvents.last?.objectValue)
            #expect(last["status"] == "COMPLETED")
            #expect(last["logs"]?.arrayValue?.first?.objectValue?["level"] == "INFO")
            #expect(last["metrics"]?.objectValue?["inference_time"] != nil)
            let status = try await broker.call(.get, "/fal/\(model)/requests/\(id)/status")
            #expect(status.status == 200 && status["logs"] == .null)
        }
    }

    @Test func statusShowsPositionEstimatedWaitAndLogs() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            var ids: [String] = []
            for index in 0..<10 { ids.append(try await broker.submit(model: model, payload: ["i": .int(Int64(index))])) }
            let job = try #require(try await broker.lease(models: [model], maxJobs: 3).first)
            _ = try await broker.write("heartbeat", job: job, ["logs": ["loading", ["message": "hot", "level": "warning", "source": "gpu"]]])
            let running = try await broker.call(.get, "/v1/queue/status?model=\(model)&request_id=\(ids[0])&logs=1")
            let logs = try #require(running["logs"]?.arrayValue)
            #expect(logs.map { $0.objectValue?["message"] } == ["loading", "hot"])
            #expect(logs.last?.objectValue?["level"] == "warning" && logs.last?.objectValue?["source"] == "gpu")
            #expect(logs.allSatisfy { $0.objectValue?["timestamp"]?.stringValue.flatMap(RFC3339.date(from:)) != nil })
            #expect(running["queue_position"] == .null)
            #expect(try await broker.status(model: model, requestID: ids[0])["logs"] == nil)

            // Jobs 0–2 leased, then 3–4; three of them finished, each after about a second (the row says
            // so): 2 still run, in 2 slots, so job 9 waits for 5 releases, one every half second.
            _ = try await broker.write("complete", job: job)
            for other in try await broker.lease(models: [model], maxJobs: 2) { _ = try await broker.write("complete", job: other) }
            _ = try await TestDatabase.withStore { store in
                try await store.client.query(
                    "UPDATE jobs SET claimed_at = done_at - interval '1 second' WHERE model = \(model) AND status = 'done'",
                    logger: TestDatabase.logger)
            }
            // The mean run time is cached for 2 s: the estimate follows the rewritten rows once it is renewed.
            var wait: Double?
            try await eventually("job 9's estimate says 5 releases of 2 slots at 1 s a job (2.25 s), not \(String(describing: wait))") {
                let last = try await broker.status(model: model, requestID: ids[9])
                wait = last["estimated_wait_seconds"]?.doubleValue
                return last["queue_position"] == 4 && wait.map { abs($0 - 2.25) < 0.01 } == true
            }
        }
    }

    /// The Together cancel keeps Together's behaviour without the flag; with `cancel_running` the
    /// worker hears it at its next heartbeat, the SDK cancels the handler's task, and the job ends canceled.
    @Test func cancelRunningStopsTheHandler() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let seen = Seen()
            var configuration = WorkerConfiguration(brokerURLs: [broker.baseURL], models: [model])
            configuration.leaseSeconds = 3
            let worker = try Worker(configuration: configuration, handler: UntilCanceled(seen: seen), logger: TestDatabase.logger)
            let running = Task { try await worker.run() }
            defer { running.cancel() }
            try await eventually("the handler runs") { seen.withLock { $0.started } }

            let refused = try await broker.post("/v1/queue/cancel", ["model": .string(model), "request_id": .string(id)])
            #expect(refused.status == 409 && refused["status"] == "running")
            let accepted = try await broker.post("/v1/queue/cancel", ["model": .string(model), "request_id": .string(id), "cancel_running": true])
            #expect(accepted.status == 202)
            #expect(accepted.json == ["status": "running", "cancel_requested": true])
            try await eventually("the job ends canceled", timeout: .seconds(15)) {
                try await broker.status(model: model, requestID: id)["status"] == "canceled"
            }
            #expect(seen.withLock { $0.cancelled && $0.stopReason == .canceled })
            #expect(try await broker.status(model: model, requestID: id)["retries"] == 0)
        }
    }
}

final class Seen: Sendable {
    private let state = Mutex<(started: Bool, stopReason: StopReason?, cancelled: Bool)>((false, nil, false))
    func withLock<T: Sendable>(_ body: (inout sending (started: Bool, stopReason: StopReason?, cancelled: Bool)) -> sending T) -> T {
        state.withLock(body)
    }
}

/// Runs until its task is cancelled, and records what it saw.
struct UntilCanceled: JobHandler {
    let seen: Seen

    func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] {
        seen.withLock { $0.started = true }
        do {
            try await Task.sleep(for: .seconds(120))
        } catch {
            seen.withLock {
                $0.cancelled = true
                $0.stopReason = context.stopReason
            }
            throw error
        }
        return [:]
    }
}
