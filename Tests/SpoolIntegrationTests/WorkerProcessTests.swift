import Foundation
import Logging
import PostgresNIO
import SpoolCore
import SpoolWorker
import Synchronization
import Testing

@testable import SpoolStore

#if canImport(Glibc)
import Glibc
#endif

/// Real broker and worker processes over real HTTP, against a real PostgreSQL. Serialized: each
/// runs several processes, and on two cores they would starve each other's timing.
@Suite(.serialized) struct WorkerProcessTests {
    static let python = PythonScript.interpreter
    static let handler = "\(python) \(SpawnedProcess.packageRoot)/Tests/sdk/exec_handler.py"

    func broker() async throws -> BrokerProcess {
        try await BrokerProcess.start(databaseURL: TestDatabase.url(database: TestDatabase.migrated()))
    }

    func status(_ broker: BrokerProcess, _ model: String, _ id: String) async throws -> Answer {
        try await HTTP.status(broker: broker, model: model, requestID: id)
    }

    func waitForStatus(
        _ broker: BrokerProcess, _ model: String, _ id: String, _ expected: String, timeout: Duration = .seconds(60)
    )
        async throws -> Answer
    {
        var last: Answer?
        try await eventually("job \(id) is \(expected) (last: \(String(describing: last?.json)))", timeout: timeout) {
            last = try await status(broker, model, id)
            return last?["status"] == .string(expected)
        }
        return last!
    }

    func logs(_ id: String) async throws -> [JobLogRecord] {
        try await TestDatabase.withStore { store in
            try await store.jobLogs.list(requestID: UUID(uuidString: id)!, on: store.client, logger: TestDatabase.logger)
        }
    }

    @Test func execRunsAPythonHandlerEndToEnd() async throws {
        let broker = try await broker()
        let model = uniqueModel("exec")
        let worker = try await WorkerProcess.start(brokers: [broker], models: [model], arguments: ["--exec", Self.handler, "--concurrency", "2"])

        let ok = try await HTTP.submit(broker: broker, model: model, payload: ["prompt": "hi"])
        let done = try await waitForStatus(broker, model, ok, "done")
        #expect(done["outputs"] == ["echo": ["prompt": "hi"], "attempt": 1, "by": "attempt 1"])
        // Python's 1.0 stays a float on the way through jsonb.
        #expect(done["info"] == ["stage": "started", "attempt": 1, "progress": 1.0])
        let lines = try await logs(ok)
        #expect(lines.contains { $0.message == "handler started for \(ok)" && $0.level == "info" })
        #expect(lines.contains { $0.message == "plain stdout line" && $0.level == "stdout" })
        #expect(lines.contains { $0.message == "a note on stderr" && $0.level == "stderr" })

        let failing = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "fail"])
        let failed = try await waitForStatus(broker, model, failing, "failed")
        let error = try #require(failed["error"]?.stringValue)
        #expect(error.contains("status 3"))
        #expect(error.contains("CUDA error: out of memory"))
        #expect(failed["retries"] == 0)

        // Exit 75 is retryable: it runs until the retry limit, then fails.
        let flaky = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "tempfail"])
        let gaveUp = try await waitForStatus(broker, model, flaky, "failed")
        #expect(gaveUp["retries"] == 3)
        #expect(gaveUp["error"]?.stringValue?.contains("status 75") == true)

        #expect(await worker.process.stop() == 0)
        #expect(await broker.process.stop() == 0)
    }

    /// The README's Python handler, as `spool-worker --exec` runs it in the demo.
    @Test func theExampleHandlerRuns() async throws {
        let broker = try await broker()
        let model = uniqueModel("example")
        let worker = try await WorkerProcess.start(
            brokers: [broker], models: [model],
            arguments: ["--exec", "\(Self.python) \(SpawnedProcess.packageRoot)/Examples/handler.py"])
        let id = try await HTTP.submit(broker: broker, model: model, payload: ["prompt": "spool"])
        let done = try await waitForStatus(broker, model, id, "done")
        #expect(done["outputs"] == ["text": "loops"])
        #expect(done["info"] == ["progress": 1.0])
        #expect(try await logs(id).map(\.message) == ["reversed 5 characters"])
        #expect(await worker.process.stop() == 0)
        #expect(await broker.process.stop() == 0)
    }

    @Test func forwardSendsThePayloadToAnInferenceServer() async throws {
        let server = try SpawnedProcess([Self.python, "-u", SpawnedProcess.packageRoot + "/Tests/sdk/echo_server.py"])
        let port = try await server.waitForOutput(matching: #"listening on (\d+)"#)
        let broker = try await broker()
        let model = uniqueModel("forward")
        let worker = try await WorkerProcess.start(
            brokers: [broker], models: [model], arguments: ["--forward", "http://127.0.0.1:\(port)/generate"])

        let ok = try await HTTP.submit(broker: broker, model: model, payload: ["prompt": "stressed"])
        let done = try await waitForStatus(broker, model, ok, "done")
        #expect(done["outputs"]?.objectValue?["generated"] == "desserts")
        #expect(done["outputs"]?.objectValue?["path"] == "/generate")
        #expect(done["outputs"]?.objectValue?["request_id"] == .string(ok))

        let refused = try await HTTP.submit(broker: broker, model: model, payload: ["status": 422])
        let failed = try await waitForStatus(broker, model, refused, "failed")
        #expect(failed["retries"] == 0)
        #expect(failed["error"]?.stringValue?.contains("422") == true)

        let broken = try await HTTP.submit(broker: broker, model: model, payload: ["status": 503])
        let exhausted = try await waitForStatus(broker, model, broken, "failed")
        #expect(exhausted["retries"] == 3)

        #expect(await worker.process.stop() == 0)
        #expect(await broker.process.stop() == 0)
        await server.stop(signal: SIGKILL)
    }

    /// A worker killed mid-job: the job is requeued when its lease expires and another worker
    /// completes it, with retries = 1 and the first attempt's emits still in `info`.
    @Test func aKilledWorkersJobIsFinishedByAnother() async throws {
        let broker = try await broker()
        let model = uniqueModel("kill")
        let doomed = try await WorkerProcess.start(
            brokers: [broker], models: [model], arguments: ["--exec", Self.handler, "--lease-seconds", "2"])
        let id = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "hang-first"])
        var pid: pid_t = 0
        try await eventually("the first attempt reports progress") {
            let info = try await status(broker, model, id)["info"]?.objectValue
            if case .int(let value)? = info?["first_attempt_pid"] { pid = pid_t(value) }
            return info?["progress"] == 0.5
        }
        doomed.process.signal(SIGKILL)
        kill(pid, SIGKILL)  // the handler outlives its worker; it is not the test's subject
        _ = await doomed.process.stop()

        let rescuer = try await WorkerProcess.start(brokers: [broker], models: [model], arguments: ["--exec", Self.handler])
        let done = try await waitForStatus(broker, model, id, "done")
        #expect(done["retries"] == 1)
        #expect(done["outputs"]?.objectValue?["attempt"] == 2)
        let info = try #require(done["info"]?.objectValue)
        #expect(info["first_attempt_pid"] == .int(Int64(pid)))
        #expect(info["progress"] == 1.0)
        guard case .array(let history)? = info["retry_history"] else { throw TestFailure("no retry history in \(info)") }
        #expect(history.first?.objectValue?["reason"] == "lease_expired")
        #expect(await rescuer.process.stop() == 0)
        #expect(await broker.process.stop() == 0)
    }

    /// A worker paused past its lease comes back and reports: refused (409), and the job keeps the
    /// second attempt's outputs.
    @Test func aStaleWorkersLateResultIsRefused() async throws {
        let broker = try await broker()
        let model = uniqueModel("stale")
        let slow = try await WorkerProcess.start(
            brokers: [broker], models: [model], arguments: ["--exec", Self.handler, "--lease-seconds", "2", "--log-level", "debug"])
        let id = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "slow-first", "seconds": 4])
        try await eventually("the first attempt runs") {
            try await status(broker, model, id)["info"]?.objectValue?["first_attempt_pid"] != nil
        }
        kill(slow.process.pid, SIGSTOP)
        try await eventually("the paused worker's lease expires and the job is requeued") {
            try await status(broker, model, id)["status"] == "pending"
        }
        let fast = try await WorkerProcess.start(brokers: [broker], models: [model], arguments: ["--exec", Self.handler])
        let done = try await waitForStatus(broker, model, id, "done")
        #expect(done["outputs"]?.objectValue?["by"] == "attempt 2")
        kill(slow.process.pid, SIGCONT)
        _ = try await slow.process.waitForOutput(matching: "lost the lease|result was refused")
        #expect(try await status(broker, model, id)["outputs"]?.objectValue?["by"] == "attempt 2")
        #expect(await slow.process.stop() == 0)
        #expect(await fast.process.stop() == 0)
        #expect(await broker.process.stop() == 0)
    }

    /// SIGTERM drains: a job that finishes within the drain period is completed; one that does not
    /// is handed back at once (no retry used), and the worker exits cleanly.
    @Test func sigtermDrainsFinishingOrHandingBackJobs() async throws {
        let broker = try await broker()
        let model = uniqueModel("drain")
        let worker = try await WorkerProcess.start(
            brokers: [broker], models: [model], arguments: ["--exec", Self.handler, "--concurrency", "2", "--drain-seconds", "3"])
        let quick = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "sleep", "seconds": 1])
        let long = try await HTTP.submit(broker: broker, model: model, payload: ["mode": "sleep", "seconds": 120])
        try await eventually("both jobs run") {
            let a = try await status(broker, model, quick)["info"]?.objectValue?["pid"]
            let b = try await status(broker, model, long)["info"]?.objectValue?["pid"]
            return a != nil && b != nil
        }
        let start = ContinuousClock.now
        worker.process.signal(SIGTERM)
        #expect(try await worker.process.wait(timeout: .seconds(25)) == 0)
        #expect(ContinuousClock.now - start < .seconds(20))
        #expect(try await status(broker, model, quick)["status"] == "done")
        let handedBack = try await status(broker, model, long)
        #expect(handedBack["status"] == "pending")
        #expect(handedBack["retries"] == 0)
        guard case .array(let history)? = handedBack["info"]?.objectValue?["retry_history"] else {
            throw TestFailure("no retry history: \(handedBack.json)")
        }
        #expect(history.last?.objectValue?["reason"] == "released")
        if case .int(let pid)? = handedBack["info"]?.objectValue?["pid"] { kill(pid_t(pid), SIGKILL) }
        #expect(await broker.process.stop() == 0)
    }

    /// A worker started before its broker keeps trying, says so once, and works once the broker is up;
    /// a dead replica among its URLs costs it nothing.
    @Test func aWorkerOutlivesAnUnreachableBroker() async throws {
        let port = try freePort()
        let deadPort = try freePort()
        let model = uniqueModel("outage")
        let pending = BrokerProcess(process: try SpawnedProcess(["true"]), port: port)
        let dead = BrokerProcess(process: try SpawnedProcess(["true"]), port: deadPort)
        let worker = try await WorkerProcess.start(
            brokers: [dead, pending], models: [model], arguments: ["--exec", Self.handler, "--log-level", "debug"])
        _ = try await worker.process.waitForOutput(matching: "broker unreachable")
        // Several retries later, still one line: each change of state is logged once.
        try await eventually("the worker has retried a few times") {
            worker.process.output.components(separatedBy: "broker call failed again").count > 3
        }
        #expect(worker.process.output.components(separatedBy: "broker unreachable").count - 1 == 1)

        let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: TestDatabase.migrated()), port: port)
        let id = try await HTTP.submit(broker: broker, model: model)
        _ = try await waitForStatus(broker, model, id, "done", timeout: .seconds(60))
        #expect(worker.process.output.contains("broker reachable again"))
        #expect(await worker.process.stop() == 0)
        #expect(await broker.process.stop() == 0)
    }

    /// Two brokers, four workers (the README's Swift worker), 2,000 jobs: each done exactly once.
    @Test func twoBrokersFourWorkersTwoThousandJobs() async throws {
        let brokers = [try await broker(), try await broker()]
        let model = uniqueModel("fleet")
        var workers: [WorkerProcess] = []
        for _ in 0..<4 { workers.append(try await WorkerProcess.startExample(brokers: brokers, models: [model], concurrency: 8)) }
        let count = 2_000
        let start = ContinuousClock.now
        let ids = try await withThrowingTaskGroup(of: [(Int, String)].self) { group in
            for lane in 0..<16 {
                group.addTask {
                    var ids: [(Int, String)] = []
                    for index in stride(from: lane, to: count, by: 16) {
                        let broker = brokers[index % 2]
                        ids.append(
                            (index, try await HTTP.submit(broker: broker, model: model, payload: ["prompt": .string("job \(index)"), "steps": 0])))
                    }
                    return ids
                }
            }
            var all: [(Int, String)] = []
            for try await lane in group { all += lane }
            return all
        }
        #expect(Set(ids.map(\.1)).count == count)
        let counts = try await TestDatabase.withStore { store in
            var result = (done: 0, once: 0)
            try await eventually("all \(count) jobs are done", timeout: .seconds(240), every: .milliseconds(250)) {
                let row = try await store.client.query(
                    "SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'done' AND attempt = 1) FROM jobs WHERE model = \(model)",
                    logger: TestDatabase.logger
                ).collect().first?.decode((Int, Int).self)
                result = (row?.0 ?? 0, row?.1 ?? 0)
                return result.done == count
            }
            return result
        }
        let elapsed = ContinuousClock.now - start
        print("2 brokers, 4 workers × 8: \(count) jobs submitted and done in \(elapsed) (\(Int(Double(count) / elapsed.seconds)) jobs/s)")
        // Claimed once each: no job ran twice, none was lost.
        #expect(counts.once == count)
        let outputs = try await TestDatabase.withStore { store in
            try await store.client.query(
                "SELECT count(*) FROM jobs WHERE model = \(model) AND outputs ->> 'text' = upper(payload ->> 'prompt')",
                logger: TestDatabase.logger
            ).collect().first?.decode(Int.self)
        }
        #expect(outputs == count)
        for worker in workers { #expect(await worker.process.stop() == 0) }
        for broker in brokers { #expect(await broker.process.stop() == 0) }
    }

    /// An idle worker waiting in a lease starts each new job while it waits (its pickup latency is
    /// measured by `spool-bench --only pickup`), most of them handed over by the submit itself.
    @Test func anIdleWorkerStartsEachNewJobWhileItWaits() async throws {
        let broker = try await broker()
        let model = uniqueModel("pickup")
        let starts = StartTimes()
        var configuration = WorkerConfiguration(brokerURLs: [broker.baseURL], models: [model])
        configuration.waitSeconds = 20
        let worker = try Worker(configuration: configuration, handler: RecordingHandler(starts: starts), logger: TestDatabase.logger)
        let running = Task { try await worker.run() }

        let jobs = 30
        for index in 0..<jobs {
            // Idle again: the previous job is done and the worker is back in its long-poll.
            try await Task.sleep(for: .milliseconds(index == 0 ? 500 : 50))
            let id = try await HTTP.submit(broker: broker, model: model)
            // Well inside the worker's 20 s wait: a NOTIFY or the handover woke it, not its wait ending.
            try await eventually("job \(index) starts", timeout: .seconds(15), every: .milliseconds(5)) { starts.start(of: id) != nil }
        }
        let metrics = try await HTTP.text(broker.baseURL + "/metrics")
        func counted(_ event: String) -> Int? {
            let prefix = "spool_jobs_\(event)_total{model=\"\(model)\"} "
            return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) }
        }
        #expect(counted("claimed") == jobs)
        // The worker is back in its wait before most submits, and the broker took the job straight there.
        #expect((counted("handed_over") ?? 0) >= 1, "no job was handed over")
        running.cancel()
        _ = try? await running.value
        #expect(await broker.process.stop() == 0)
    }
}

final class StartTimes: Sendable {
    private let starts = Mutex<[String: ContinuousClock.Instant]>([:])
    func record(_ id: String) { starts.withLock { $0[id] = .now } }
    func start(of id: String) -> ContinuousClock.Instant? { starts.withLock { $0[id] } }
}

struct RecordingHandler: JobHandler {
    let starts: StartTimes
    func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] {
        starts.record(job.requestID)
        return [:]
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
    var milliseconds: String { String(format: "%.1f", seconds * 1000) }
}
