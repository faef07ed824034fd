import AsyncHTTPClient
import Foundation
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolStore

/// A queue a million jobs deep: status calls answer the exact queue position (their latency is
/// measured by `spool-bench`, `status_ms_at_1m`).
extension HeavyTests {
    @Suite struct DeepQueueTests {
        @Test func statusWithAMillionPendingJobs() async throws {
            try await TestDatabase.withFreshDatabase(migrated: true) { database in
                let model = "deep/queue"
                let count = 1_000_000
                let inserted = ContinuousClock.now
                try await TestDatabase.withClient(database: database) { client in
                    try await client.query(
                        """
                        INSERT INTO jobs (request_id, model, priority, payload, tenant, fair_tag)
                        SELECT gen_random_uuid(), \(model), (i % 3), '{}'::jsonb, 't' || (i % 2), (\(count) - i) / 2
                        FROM generate_series(1, \(count)) AS i
                        """, logger: TestDatabase.logger)
                    try await client.query("ANALYZE jobs", logger: TestDatabase.logger)
                }
                print("deep queue: inserted \(count) pending jobs in \((ContinuousClock.now - inserted).milliseconds) ms")
                // Samples across the queue: every priority tier, near the head and at the tail.
                let samples = try await TestDatabase.withClient(database: database) { client in
                    var samples: [(id: String, priority: Int32, rowID: Int64, fairTag: Double)] = []
                    let rows = try await client.query(
                        """
                        SELECT request_id::text, priority, id, fair_tag FROM jobs
                        WHERE id IN (SELECT (random() * \(count))::bigint + 1 FROM generate_series(1, 200))
                           OR id IN (1, 2, 3, \(count), \(count - 1))
                        """, logger: TestDatabase.logger)
                    for try await (id, priority, rowID, tag) in rows.decode((String, Int32, Int64, Double).self) {
                        samples.append((id, priority, rowID, tag))
                    }
                    return samples
                }

                try await withTestBroker(database: database) { broker in
                    var checked = 0
                    for (index, sample) in samples.enumerated() {
                        let answer = try await HTTP.get(broker.baseURL + "/v1/queue/status?model=deep%2Fqueue&request_id=\(sample.id)")
                        let position = try #require(answer["queue_position"].flatMap { if case .int(let p) = $0 { Int(p) } else { nil } })
                        // Exact: the same count SQL gives, for a spread of samples (the count itself is slow, so not all).
                        if index % 20 == 0 {
                            let exact = try await TestDatabase.withClient(database: database) { client in
                                try await JobsTable().pendingAhead(
                                    model: model, priority: sample.priority, fairTag: sample.fairTag, id: sample.rowID, on: client,
                                    logger: TestDatabase.logger)
                            }
                            #expect(position == exact)
                            checked += 1
                        }
                    }
                    #expect(checked >= 10, "only \(checked) positions checked")
                }
            }
        }
    }
}
