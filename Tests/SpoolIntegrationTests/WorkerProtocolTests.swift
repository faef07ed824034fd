import Foundation
import HTTPTypes
import SpoolBroker
import SpoolCore
import Testing

@testable import SpoolStore

/// The worker protocol over a real socket against a real PostgreSQL.
@Suite struct WorkerProtocolTests {
    /// Brokers in these tests sweep leases often, so expiries show within a fraction of a second.
    static func fastMaintenance(_ configuration: inout BrokerConfiguration) {
        configuration.maintenanceIntervalSeconds = 0.1
    }

    @Test func leaseHeartbeatCompleteRoundTrip() async throws {
        try await withTestBroker(Self.fastMaintenance) { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model, payload: ["prompt": "a cat"], priority: 2, info: ["user": "u1"])
            let jobs = try await broker.lease(models: [model], worker: "w-1", maxJobs: 5)
            #expect(jobs.count == 1)
            let job = try #require(jobs.first)
            #expect(job.objectValue?["request_id"] == .string(id))
            #expect(job.objectValue?["model"] == .string(model))
            #expect(job.objectValue?["attempt"] == 1)
            #expect(job.objectValue?["priority"] == 2)
            #expect(job.objectValue?["payload"] == ["prompt": "a cat"])
            #expect(job.objectValue?["info"] == ["user": "u1"])
            #expect(job.objectValue?["lease_token"]?.stringValue.flatMap(UUID.init(uuidString:)) != nil)
            let expires = try #require(job.objectValue?["lease_expires_at"]?.stringValue.flatMap(RFC3339.date(from:)))
            #expect(expires.timeIntervalSinceNow > 20)

            let beat = try await broker.write(
                "heartbeat", job: job, ["info": ["progress": 0.5], "logs": ["loading weights", ["message": "slow disk", "level": "warning"]]])
            #expect(beat.status == 200)
            #expect(beat["stop"] == false)
            #expect(beat["stop_reason"] == .null)
            let running = try await broker.status(model: model, requestID: id)
            #expect(running["status"] == "running")
            #expect(running["info"] == ["user": "u1", "progress": 0.5])

            let done = try await broker.write("complete", job: job, ["outputs": ["url": "https://x/cat.png"], "info": ["progress": 1]])
            #expect(done.status == 200)
            #expect(done.json == ["request_id": .string(id), "status": "done", "retries": 0])
            let status = try await broker.status(model: model, requestID: id)
            #expect(status["status"] == "done")
            #expect(status["outputs"] == ["url": "https://x/cat.png"])
            #expect(status["info"] == ["user": "u1", "progress": 1])
            #expect(status["done_at"] != .null)

            // A complete retried after a lost answer is told it succeeded, and changes nothing.
            let again = try await broker.write("complete", job: job, ["outputs": ["url": "other"]])
            #expect(again.status == 200 && again["status"] == "done")
            #expect(again.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
            #expect(try await broker.status(model: model, requestID: id)["outputs"] == ["url": "https://x/cat.png"])

            let logs = try await TestDatabase.withStore { store in
                try await store.jobLogs.list(requestID: UUID(uuidString: id)!, on: store.client, logger: TestDatabase.logger)
            }
            #expect(logs.map(\.message) == ["loading weights", "slow disk"])
            #expect(logs.map(\.level) == ["info", "warning"])
            #expect(logs.allSatisfy { $0.attempt == 1 })
        }
    }

    @Test func leasesHandOutJobsInPriorityOrderAcrossModels() async throws {
        try await withTestBroker { broker in
            let (a, b) = (uniqueModel(), uniqueModel())
            let low = try await broker.submit(model: a, priority: 1)
            let high = try await broker.submit(model: b, priority: 9)
            let middle = try await broker.submit(model: a, priority: 5)
            let jobs = try await broker.lease(models: [a, b], maxJobs: 2)
            #expect(jobs.map { $0.objectValue?["request_id"] } == [.string(high), .string(middle)])
            let rest = try await broker.lease(models: [a, b], maxJobs: 10)
            #expect(rest.map { $0.objectValue?["request_id"] } == [.string(low)])
            #expect(try await broker.lease(models: [a, b]).isEmpty)
        }
    }

    /// The lease expires, the job moves to another worker, and the first worker's writes are refused: fencing.
    @Test func aStaleLeaseIsRefusedAndChangesNothing() async throws {
        try await withTestBroker(Self.fastMaintenance) { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            // Long enough that the heartbeat below lands inside it on a busy machine, short enough to expire soon.
            let first = try #require(try await broker.lease(models: [model], worker: "slow", leaseSeconds: 3).first)
            _ = try await broker.write("heartbeat", job: first, ["info": ["first": true]])
            try await eventually("the expired lease is requeued") {
                try await broker.status(model: model, requestID: id)["status"] == "pending"
            }
            let second = try #require(try await broker.lease(models: [model], worker: "fast").first)
            #expect(second.objectValue?["attempt"] == 2)
            #expect(second.objectValue?["lease_token"] != first.objectValue?["lease_token"])
            #expect(second.objectValue?["info"]?.objectValue?["first"] == true)

            for action in ["heartbeat", "complete", "fail", "release"] {
                let stale = try await broker.write(action, job: first, ["outputs": ["by": "slow"], "error": "late", "info": ["stale": true]])
                #expect(stale.status == 409, "\(action)")
                #expect(stale["code"] == "lease_lost")
                #expect(stale["status"] == "running")
                #expect(stale["attempt"] == 2)
            }
            let done = try await broker.write("complete", job: second, ["outputs": ["by": "fast"]])
            #expect(done.status == 200)
            let stale = try await broker.write("complete", job: first, ["outputs": ["by": "slow"]])
            #expect(stale.status == 409 && stale["status"] == "done")
            let status = try await broker.status(model: model, requestID: id)
            #expect(status["outputs"] == ["by": "fast"])
            #expect(status["retries"] == 1)
            #expect(status["info"]?.objectValue?["stale"] == nil)
            let history = status["info"]?.objectValue?["retry_history"]
            guard case .array(let entries)? = history else { throw TestFailure("no retry history: \(status.json)") }
            #expect(entries.count == 1)
            #expect(entries.first?.objectValue?["reason"] == "lease_expired")
            #expect(entries.first?.objectValue?["worker_id"] == "slow")
            #expect(entries.first?.objectValue?["attempt"] == 1)
        }
    }

    @Test func threeExpiriesInARowFailTheJob() async throws {
        try await withTestBroker(Self.fastMaintenance) { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            for attempt in 1...3 {
                let job = try #require(try await broker.lease(models: [model], waitSeconds: 5, leaseSeconds: 1).first)
                #expect(job.objectValue?["attempt"] == .int(Int64(attempt)))
            }
            try await eventually("the third expiry fails the job") {
                try await broker.status(model: model, requestID: id)["status"] == "failed"
            }
            let status = try await broker.status(model: model, requestID: id)
            #expect(status["retries"] == 3)
            let error = try #require(status["error"]?.stringValue)
            #expect(error.contains("lease expired 3 times"))
            #expect(error.contains("retry limit 3"))
            if case .array(let entries)? = status["info"]?.objectValue?["retry_history"] {
                #expect(entries.count == 3)
            } else {
                Issue.record("no retry history")
            }
            #expect(try await broker.lease(models: [model]).isEmpty)
        }
    }

    /// Two replicas sweeping the same expired leases at once: each job is requeued once.
    @Test func twoReplicasRequeueEachExpiredLeaseOnce() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let model = uniqueModel()
            try await TestDatabase.withClient(database: database) { client in
                try await ClaimTests.insertPendingJobs(model: model, count: 400, client: client)
                _ = try await JobsTable().claim(
                    models: [model], limit: 400, leaseSeconds: 1, maxRunSeconds: 3600, workerID: "gone", on: client,
                    logger: TestDatabase.logger)
            }
            let fast: @Sendable (inout BrokerConfiguration) -> Void = { $0.maintenanceIntervalSeconds = 0.02 }
            try await withTestBroker(database: database, fast) { first in
                try await withTestBroker(database: database, fast) { second in
                    try await eventually("every expired lease is requeued") {
                        try await first.metrics(model: model)["messages_waiting"] == 400
                    }
                }
            }
            let counts = try await TestDatabase.withClient(database: database) { client in
                try await client.query(
                    """
                    SELECT count(*) FILTER (WHERE retries = 1),
                           count(*) FILTER (WHERE jsonb_array_length(info -> 'retry_history') = 1)
                    FROM jobs WHERE model = \(model)
                    """, logger: TestDatabase.logger
                ).collect().first?.decode((Int, Int).self)
            }
            #expect(counts?.0 == 400)
            #expect(counts?.1 == 400)
        }
    }

    @Test func anExplicitFailIsNotRetriedUnlessTheWorkerSaysSo() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let final = try await broker.submit(model: model, priority: 1)
            let job = try #require(try await broker.lease(models: [model]).first)
            let failed = try await broker.write("fail", job: job, ["error": "CUDA out of memory", "logs": ["oom at step 3"]])
            #expect(failed.json == ["request_id": .string(final), "status": "failed", "retries": 0])
            let status = try await broker.status(model: model, requestID: final)
            #expect(status["status"] == "failed" && status["error"] == "CUDA out of memory")
            #expect(try await broker.lease(models: [model]).isEmpty)

            let retried = try await broker.submit(model: model)
            let first = try #require(try await broker.lease(models: [model]).first)
            let answer = try await broker.write("fail", job: first, ["error": "flaky download", "retryable": true])
            #expect(answer.json == ["request_id": .string(retried), "status": "pending", "retries": 1])
            let pending = try await broker.status(model: model, requestID: retried)
            #expect(pending["error"] == .null)
            let second = try #require(try await broker.lease(models: [model]).first)
            #expect(second.objectValue?["attempt"] == 2)
        }
    }

    @Test func aReleasedJobGoesBackWithoutUsingARetry() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let job = try #require(try await broker.lease(models: [model]).first)
            let answer = try await broker.write("release", job: job, ["info": ["partial": 0.4]])
            #expect(answer.json == ["request_id": .string(id), "status": "pending", "retries": 0])
            let again = try #require(try await broker.lease(models: [model]).first)
            #expect(again.objectValue?["request_id"] == .string(id))
            #expect(again.objectValue?["info"]?.objectValue?["partial"] == 0.4)
        }
    }

    /// On its own database: every broker's reaper applies its own grace period to the jobs it sees.
    @Test func aJobPastTheMaximumRunTimeIsAskedToStopThenFails() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(
                database: database,
                {
                    Self.fastMaintenance(&$0)
                    $0.maxRunSeconds = 1
                    $0.stopGraceSeconds = 1
                }
            ) { broker in
                let model = uniqueModel()
                let id = try await broker.submit(model: model)
                let job = try #require(try await broker.lease(models: [model], leaseSeconds: 60).first)
                var stopAnswer: Answer?
                try await eventually("a heartbeat says stop") {
                    let beat = try await broker.write("heartbeat", job: job)
                    if beat["stop"] == true { stopAnswer = beat }
                    return beat["stop"] == true
                }
                #expect(stopAnswer?["stop_reason"] == "max_run_time")
                // The lease is cut to the grace period and no longer extended.
                let expires = try #require(stopAnswer?["lease_expires_at"]?.stringValue.flatMap(RFC3339.date(from:)))
                #expect(expires.timeIntervalSinceNow < 5)
                try await eventually("the job fails at the end of the grace period") {
                    try await broker.status(model: model, requestID: id)["status"] == "failed"
                }
                let status = try await broker.status(model: model, requestID: id)
                #expect(status["error"]?.stringValue?.contains("maximum run time") == true)
                #expect(status["retries"] == 0)
            }
        }
    }

    @Test func aWaitingLeaseGetsANewJobAtOnce() async throws {
        try await withTestBroker({ $0.pendingPollSeconds = 60 }) { broker in
            let model = uniqueModel()
            async let leased = broker.lease(models: [model], waitSeconds: 20)
            try await eventually("the lease is waiting") { broker.waitingLeases() > 0 }
            let start = ContinuousClock.now
            // Submitted over another connection: the test client has one, and the lease holds it.
            let id = try await TestDatabase.withStore { store in
                guard
                    case .created(let id) = try await store.submit(
                        .init(model: model, payload: [:]), submittedBy: "test", tenant: "default", weight: 1, idempotency: nil,
                        logger: TestDatabase.logger)
                else { throw TestFailure("not created") }
                return id.uuidString.lowercased()
            }
            let jobs = try await leased
            let elapsed = ContinuousClock.now - start
            #expect(jobs.first?.objectValue?["request_id"] == .string(id))
            // NOTIFY, not the 60 s poll, woke it: without it the 20 s wait would end empty (slack for busy CI machines).
            #expect(elapsed < .seconds(15), "woken after \(elapsed)")
        }
    }

    /// A worker waiting on one broker gets a job submitted to another: NOTIFY crosses replicas.
    @Test func aJobSubmittedToAnotherReplicaWakesAWaitingLease() async throws {
        try await withTestBroker({ $0.pendingPollSeconds = 60 }) { first in
            try await withTestBroker({ $0.pendingPollSeconds = 60 }) { second in
                let model = uniqueModel()
                async let leased = first.lease(models: [model], waitSeconds: 20)
                try await eventually("the lease is waiting") { first.waitingLeases() > 0 }
                let start = ContinuousClock.now
                let id = try await second.submit(model: model)
                let jobs = try await leased
                #expect(jobs.first?.objectValue?["request_id"] == .string(id))
                // Without NOTIFY the 20 s wait would end empty; the bound leaves slack for busy CI machines.
                #expect(ContinuousClock.now - start < .seconds(15))
            }
        }
    }

    @Test func aLeaseWithNothingToDoAnswersEmptyWhenItsWaitEnds() async throws {
        try await withTestBroker { broker in
            let start = ContinuousClock.now
            let jobs = try await broker.lease(models: [uniqueModel()], waitSeconds: 1)
            let elapsed = ContinuousClock.now - start
            #expect(jobs.isEmpty)
            // At least the wait; the upper bound only guards against a lease that never ends (CI machines are busy).
            #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(20))
        }
    }

    @Test func badWorkerRequestsAreRefusedClearly() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let noModels = try await broker.post("/v1/worker/lease", ["worker_id": "w", "models": []])
            #expect(noModels.status == 400 && noModels["param"] == "models")
            let longWait = try await broker.post("/v1/worker/lease", ["worker_id": "w", "models": ["m"], "wait_seconds": 300])
            #expect(longWait.status == 400 && longWait["param"] == "wait_seconds")
            let badToken = try await broker.post("/v1/worker/jobs/\(id)/complete", ["lease_token": "nope", "outputs": [:]])
            #expect(badToken.status == 400 && badToken["param"] == "lease_token")
            let unknown = try await broker.post("/v1/worker/jobs/\(UUID())/heartbeat", ["lease_token": .string(UUID().uuidString)])
            #expect(unknown.status == 404 && unknown["code"] == "job_not_found")
            let notRunning = try await broker.post("/v1/worker/jobs/\(id)/complete", ["lease_token": .string(UUID().uuidString)])
            #expect(notRunning.status == 409 && notRunning["status"] == "pending")
            let nul = try await broker.call(.post, "/v1/queue/submit", body: #"{"model":"\#(model)","payload":{"p":"a\u0000b"}}"#)
            #expect(nul.status == 400 && nul["code"] == "invalid_json")
            // None of it changed the job.
            #expect(try await broker.status(model: model, requestID: id)["status"] == "pending")
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 1)
        }
    }
}
