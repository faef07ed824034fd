import Foundation
import Logging
import SpoolCore
import Testing

@testable import SpoolBroker
@testable import SpoolStore

/// A lease waiting on the replica that takes a submit gets the job in the submit's own statement:
/// fenced like any claim, never ahead of a job that waits, never to a lease that has gone.
@Suite struct HandoverTests {
    /// The broker's own counter of handed-over jobs for `model` (nil before the first).
    static func handedOver(_ broker: BrokerClient, model: String) async throws -> Int? {
        let metrics = try await HTTP.text(broker.baseURL + "/metrics")
        let prefix = "spool_jobs_handed_over_total{model=\"\(model)\"} "
        return metrics.split(separator: "\n").first { $0.hasPrefix(prefix) }.flatMap { Int($0.dropFirst(prefix.count)) }
    }

    static func submitOverAnotherConnection(_ broker: BrokerClient, model: String, payload: JSONValue = ["n": 1]) async throws -> String {
        // The test client has one connection, and the waiting lease holds it.
        let answer = try await HTTP.post(broker.baseURL + "/v1/queue/submit", ["model": .string(model), "payload": payload])
        guard answer.status == 200, let id = answer["requestId"]?.stringValue else {
            throw TestFailure("submit failed: \(answer.status) \(answer.json)")
        }
        return id
    }

    @Test func anIdleLeaseOnTheSubmitsReplicaTakesTheJobFencedByItsOwnToken() async throws {
        // No fallback poll within the test: the job comes by handover (or NOTIFY, which the counter tells apart).
        try await withTestBroker({ $0.pendingPollSeconds = 60 }) { broker in
            let model = uniqueModel()
            // The listener wakes every lease when it starts listening; one woken then is not idle for the submit.
            try await eventually("the broker listens") { broker.connections.waiters.wakeAlls > 0 }
            async let leased = broker.lease(models: [model], worker: "gpu-hand", waitSeconds: 20, leaseSeconds: 40)
            try await eventually("the lease is idle in its wait") { broker.connections.waiters.idleCount > 0 }
            let id = try await Self.submitOverAnotherConnection(broker, model: model, payload: ["prompt": "a cat"])
            let job = try #require(try await leased.first?.objectValue)
            #expect(job["request_id"] == .string(id))
            #expect(job["attempt"] == 1 && job["payload"] == ["prompt": "a cat"])
            let expires = try #require(job["lease_expires_at"]?.stringValue.flatMap(RFC3339.date(from:)))
            #expect(expires.timeIntervalSinceNow > 30 && expires.timeIntervalSinceNow <= 41)
            #expect(try await Self.handedOver(broker, model: model) == 1)

            let row = try await TestDatabase.withStore { store in
                try await store.client.query(
                    "SELECT status, worker_id, lease_seconds::float8, claimed_at IS NOT NULL, run_deadline_at > now() FROM jobs WHERE request_id = \(UUID(uuidString: id)!)",
                    logger: TestDatabase.logger
                ).collect().first?.decode((String, String?, Double?, Bool, Bool).self)
            }
            #expect(row?.0 == "running" && row?.1 == "gpu-hand" && row?.2 == 40 && row?.3 == true && row?.4 == true)

            // Fenced: another token changes nothing; its own completes it.
            var forged = job
            forged["lease_token"] = .string(UUID().uuidString.lowercased())
            #expect(try await broker.write("complete", job: .object(forged), ["outputs": [:]]).status == 409)
            #expect(try await broker.write("complete", job: .object(job), ["outputs": ["ok": true]]).status == 200)
            #expect(try await broker.status(model: model, requestID: id)["status"] == "done")
        }
    }

    /// A job that waits (its NOTIFY lost, say) goes before a new one: the submit stores the new job
    /// pending and the lease claims in queue order.
    @Test func aJobWaitingAheadIsClaimedFirstAndTheNewOneQueues() async throws {
        try await withTestBroker({ $0.pendingPollSeconds = 60 }) { broker in
            let model = uniqueModel()
            async let leased = broker.lease(models: [model], worker: "gpu-order", waitSeconds: 20)
            try await eventually("the lease is idle in its wait") { broker.connections.waiters.idleCount > 0 }
            // Stored without a NOTIFY, so the waiting lease does not know of it.
            let older = UUID()
            try await TestDatabase.withStore { store in
                _ = try await store.client.query(
                    "INSERT INTO jobs (request_id, model, payload, submitted_by) VALUES (\(older), \(model), '{}', 'test')",
                    logger: TestDatabase.logger
                ).collect()
            }
            let newer = try await Self.submitOverAnotherConnection(broker, model: model)
            let jobs = try await leased
            #expect(jobs.map { $0.objectValue?["request_id"] } == [.string(older.uuidString.lowercased())])
            #expect(try await broker.status(model: model, requestID: newer)["status"] == "pending")
            #expect(try await Self.handedOver(broker, model: model) == nil)
            // The next lease takes the newer job from the queue.
            #expect(try await broker.lease(models: [model]).first?.objectValue?["request_id"] == .string(newer))
        }
    }

    /// With running limits per tenant the claim decides what may start, so every job goes through the queue.
    @Test func withRunningLimitsEveryJobGoesThroughTheQueue() async throws {
        try await withTestBroker({
            $0.pendingPollSeconds = 60
            $0.tenants = try! TenantSettings.parse(["busy:max-running=1"])
        }) { broker in
            let model = uniqueModel()
            async let leased = broker.lease(models: [model], waitSeconds: 20)
            try await eventually("the lease is idle in its wait") { broker.connections.waiters.idleCount > 0 }
            let id = try await Self.submitOverAnotherConnection(broker, model: model)
            #expect(try await leased.first?.objectValue?["request_id"] == .string(id))
            #expect(try await Self.handedOver(broker, model: model) == nil)
        }
    }

    static func claimedJob(model: String) -> ClaimedJob {
        ClaimedJob(
            id: 1, requestID: UUID(), model: model, priority: 0, leaseToken: UUID(), attempt: 1, payload: [:], info: [:],
            leaseExpiresAt: Date(), runDeadlineAt: Date(), path: nil, queueWaitSeconds: 0)
    }

    static let terms = HandoverLease(models: ["m"], workerID: "w", leaseSeconds: 30, maxRunSeconds: 3600)

    /// A lease whose client hangs up while a submit stores a job for it waits for that submit,
    /// and leaves with the job (which the route then hands back), never without it.
    @Test func aReservedLeaseDoesNotLeaveBeforeItsJobIsResolved() async throws {
        let waiters = LeaseWaiters()
        let ticket = waiters.register(models: ["m"], terms: Self.terms)
        let ended = Flag()
        let waiting = Task {
            let jobs = await waiters.wait(ticket, timeout: .seconds(30))
            ended.set()
            return jobs
        }
        var reservation: LeaseWaiters.Reservation?
        try await eventually("the lease is idle in its wait") {
            reservation = waiters.reserve(model: "m")
            return reservation != nil
        }
        // Only one submit holds a lease, and a wake-up for the model passes it by.
        #expect(waiters.reserve(model: "m") == nil)
        waiters.wake(ticket)
        try await Task.sleep(for: .milliseconds(200))
        #expect(!ended.isSet, "the wait ended while its job was being stored")
        let job = Self.claimedJob(model: "m")
        #expect(waiters.deliver([job], to: try #require(reservation)))
        #expect(await waiting.value == [job])
        // The next wait starts clean.
        #expect(await waiters.wait(ticket, timeout: .milliseconds(10)) == [])
        waiters.unregister(ticket)
    }

    /// A reservation whose job went into the queue wakes its lease to claim it.
    @Test func aCancelledReservationWakesItsLease() async throws {
        let waiters = LeaseWaiters()
        let ticket = waiters.register(models: ["m"], terms: Self.terms)
        let waiting = Task { await waiters.wait(ticket, timeout: .seconds(30)) }
        var reservation: LeaseWaiters.Reservation?
        try await eventually("the lease is idle in its wait") {
            reservation = waiters.reserve(model: "m")
            return reservation != nil
        }
        let start = ContinuousClock.now
        waiters.cancel(try #require(reservation))
        #expect(await waiting.value == [])
        #expect(ContinuousClock.now - start < .seconds(20), "woken by the cancel, not the timeout")
        // Leases that take no handovers (RunPod's take) and other models are never reserved.
        let plain = waiters.register(models: ["m"])
        let idle = Task { await waiters.wait(plain, timeout: .seconds(30)) }
        try await eventually("the plain lease is idle in its wait") { waiters.idleCount == 1 }
        #expect(waiters.reserve(model: "m") == nil && waiters.reserve(model: "other") == nil)
        waiters.wake(plain)
        _ = await idle.value
        waiters.unregister(plain)
        waiters.unregister(ticket)
    }
}
