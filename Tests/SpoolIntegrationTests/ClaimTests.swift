import Foundation
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolStore

@Suite struct ClaimTests {
    /// Test factory: `count` pending jobs inserted straight into the table, in index order,
    /// with payload {"i": index} and a priority spread over -2…2 that is not monotone in i.
    static func insertPendingJobs(model: String, count: Int, client: PostgresClient) async throws {
        try await client.query(
            """
            INSERT INTO jobs (request_id, model, priority, payload)
            SELECT gen_random_uuid(), \(model), ((i * 7919) % 5) - 2, jsonb_build_object('i', i)
            FROM generate_series(0, \(count - 1)) AS i ORDER BY i
            """, logger: TestDatabase.logger)
    }

    static func priority(of index: Int) -> Int32 { Int32((index * 7919) % 5 - 2) }

    @Test func tenThousandJobsComeOutInPriorityThenSubmissionOrder() async throws {
        try await TestDatabase.withFreshStore { store in
            let model = uniqueModel("order")
            let count = 10_000
            try await Self.insertPendingJobs(model: model, count: count, client: store.client)
            // A few submitted through the API path too, after the factory rows: they go last within their priority.
            var submitted: [(index: Int, priority: Int32)] = []
            for index in count..<(count + 20) {
                let priority = Self.priority(of: index)
                _ = try await store.submit(
                    SubmitRequest(model: model, payload: ["i": .int(Int64(index))], priority: priority), submittedBy: "test",
                    tenant: "default", weight: 1, idempotency: nil, logger: TestDatabase.logger)
                submitted.append((index, priority))
            }

            var claimedOrder: [Int] = []
            while true {
                let batch = try await store.jobs.claim(
                    models: [model], limit: 250, leaseSeconds: 60, maxRunSeconds: 3600, workerID: "w", on: store.client, logger: TestDatabase.logger)
                if batch.isEmpty { break }
                #expect(batch.count <= 250)
                claimedOrder += batch.map { job -> Int in
                    if case .int(let i) = job.payload["i"] { return Int(i) }
                    return -1
                }
            }
            let expected = (0..<(count + 20)).sorted { (Self.priority(of: $0), -$0) > (Self.priority(of: $1), -$1) }
            #expect(claimedOrder.count == count + 20)
            #expect(claimedOrder == expected)
        }
    }

    @Test func claimSetsAFreshLeaseAndCountsTheAttempt() async throws {
        try await TestDatabase.withFreshStore { store in
            let model = uniqueModel("lease")
            try await Self.insertPendingJobs(model: model, count: 3, client: store.client)
            let jobs = try await store.jobs.claim(
                models: [model], limit: 10, leaseSeconds: 30, maxRunSeconds: 3600, workerID: "w1", on: store.client, logger: TestDatabase.logger)
            #expect(jobs.count == 3)
            #expect(Set(jobs.map(\.leaseToken)).count == 3)
            #expect(jobs.allSatisfy { $0.attempt == 1 })
            let remaining = try #require(RFC3339.date(from: jobs[0].leased.lease_expires_at)).timeIntervalSinceNow
            #expect(remaining > 20 && remaining <= 31)
            let depth = try await store.jobs.depth(model: model, on: store.client, logger: TestDatabase.logger)
            #expect(depth.waiting == 0 && depth.running == 3)
        }
    }

    @Test func eightConcurrentClaimersNeverReceiveTheSameJob() async throws {
        try await TestDatabase.withFreshStore { store in
            let model = uniqueModel("race")
            let count = 2_000
            try await Self.insertPendingJobs(model: model, count: count, client: store.client)
            let perClaimer = try await withThrowingTaskGroup(of: [UUID].self) { group in
                for claimer in 0..<8 {
                    group.addTask {
                        var mine: [UUID] = []
                        while true {
                            let batch = try await store.jobs.claim(
                                models: [model], limit: 7, leaseSeconds: 60, maxRunSeconds: 3600, workerID: "claimer-\(claimer)", on: store.client,
                                logger: TestDatabase.logger)
                            if batch.isEmpty { return mine }
                            mine += batch.map(\.requestID)
                        }
                    }
                }
                var all: [[UUID]] = []
                for try await ids in group { all.append(ids) }
                return all
            }
            let all = perClaimer.flatMap { $0 }
            #expect(all.count == count)
            #expect(Set(all).count == count)
            // The work was really shared: more than one claimer got jobs.
            #expect(perClaimer.filter { !$0.isEmpty }.count > 1)
        }
    }
}
