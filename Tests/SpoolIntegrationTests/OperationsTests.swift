import Foundation
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolBroker
@testable import SpoolStore

/// Health, readiness, metrics, the workers list, "why is my job waiting", and retention.
@Suite struct OperationsTests {
    static func fast(_ configuration: inout BrokerConfiguration) {
        configuration.depthRefreshSeconds = 0.1
        configuration.retentionIntervalSeconds = 0.1
    }

    @Test func healthAndReadinessNeedNoKey() async throws {
        try await withTestBroker({ $0.apiKeys = ["operations-key-0123456789"] }) { broker in
            let health = try await broker.withKey(nil).call(.get, "/healthz")
            #expect(health.status == 200 && health.json == ["status": "ok"])
            let ready = try await broker.withKey(nil).call(.get, "/readyz")
            #expect(ready.status == 200 && ready.json == ["status": "ready"])
            let metrics = try await HTTP.text(broker.baseURL + "/metrics")
            #expect(metrics.contains("spool_long_polls_open"))
            #expect(try await broker.withKey(nil).call(.get, "/v1/workers").status == 401)
        }
    }

    /// A job with no live worker says so; once a worker leases for its model, the warning is gone,
    /// and the worker shows in /v1/workers and in the metrics.
    @Test func workersWarningsAndMetrics() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await withTestBroker(database: database, Self.fast) { broker in
                let model = uniqueModel()
                let id = try await broker.submit(model: model, priority: 3)
                _ = try await broker.submit(model: model, priority: 0)
                try await eventually("the depth snapshot sees the jobs") {
                    try await HTTP.text(broker.baseURL + "/metrics").contains("spool_jobs_waiting{model=\"\(model)\"} 2")
                }
                let waiting = try await broker.status(model: model, requestID: id)
                #expect(waiting["warnings"]?.arrayValue?.first?.stringValue?.contains("No live worker serves model") == true)

                let job = try #require(try await broker.lease(models: [model], worker: "gpu-7-a", maxJobs: 1).first)
                try await eventually("the warning goes once a worker is live") {
                    try await broker.status(model: model, requestID: try #require(job.objectValue?["request_id"]?.stringValue))["warnings"] == []
                }
                let workers = try await broker.call(.get, "/v1/workers")["workers"]?.arrayValue ?? []
                let worker = try #require(workers.first { $0.objectValue?["id"] == "gpu-7-a" }?.objectValue)
                #expect(worker["models"] == [.string(model)])
                #expect(worker["live"] == true)
                #expect(worker["jobs_in_hand"] == 1)

                _ = try await broker.write("complete", job: job, ["outputs": [:]])
                try await eventually("the metrics show the depth, the workers and the events") {
                    let metrics = try await HTTP.text(broker.baseURL + "/metrics")
                    return metrics.contains("spool_jobs_waiting{model=\"\(model)\"} 1")
                        && metrics.contains("spool_jobs_waiting_by_priority{model=\"\(model)\",priority=\"0\"} 1")
                        && metrics.contains("spool_jobs_waiting_by_priority{model=\"\(model)\",priority=\"3\"} 0")
                        && metrics.contains("spool_workers_live{model=\"\(model)\"} 1")
                        && metrics.contains("spool_jobs_submitted_total{model=\"\(model)\"} 2")
                        && metrics.contains("spool_jobs_completed_total{model=\"\(model)\"} 1")
                        && metrics.contains("spool_job_queue_wait_seconds_count{model=\"\(model)\"} 1")
                        && metrics.contains("spool_job_run_seconds_count{model=\"\(model)\"} 1")
                        && metrics.contains("spool_http_request_duration_seconds_count{route=\"/v1/worker/lease\"")
                }
                let models = try await broker.call(.get, "/v1/models")["models"]?.arrayValue ?? []
                let row = try #require(models.first { $0.objectValue?["model"] == .string(model) }?.objectValue)
                #expect(row["messages_waiting"] == 1 && row["live_workers"] == 1)
                #expect(row["waiting_by_priority"] == ["0": 1])
            }
        }
    }

    /// Finished jobs older than the retention period are pruned, with their logs; live jobs stay.
    @Test func retentionPrunesOldFinishedJobsOnly() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let model = uniqueModel()
            try await TestDatabase.withClient(database: database) { client in
                try await ClaimTests.insertPendingJobs(model: model, count: 2500, client: client)
                // 2,400 ended: 2,000 of them long ago, 400 just now; 100 still pending.
                try await client.query(
                    """
                    UPDATE jobs SET status = 'done', done_at = now() - CASE WHEN id % 25 < 20 THEN interval '8 days' ELSE interval '1 minute' END
                    WHERE model = \(model) AND id IN (SELECT id FROM jobs WHERE model = \(model) ORDER BY id LIMIT 2400)
                    """, logger: TestDatabase.logger)
                try await client.query(
                    "INSERT INTO job_logs (job_id, attempt, message) SELECT id, 1, 'line' FROM jobs WHERE model = \(model)",
                    logger: TestDatabase.logger)
            }
            let expected = try await TestDatabase.withClient(database: database) { client in
                try await client.query(
                    "SELECT count(*) FROM jobs WHERE model = \(model) AND done_at < now() - interval '7 days'", logger: TestDatabase.logger
                ).collect().first?.decode(Int.self) ?? 0
            }
            #expect(expected > 1000)
            try await withTestBroker(database: database, Self.fast) { broker in
                try await eventually("the old jobs are pruned") {
                    try await TestDatabase.withClient(database: database) { client in
                        try await client.query("SELECT count(*) FROM jobs WHERE model = \(model)", logger: TestDatabase.logger)
                            .collect().first?.decode(Int.self) == 2500 - expected
                    }
                }
            }
            let (pending, logs) = try await TestDatabase.withClient(database: database) { client in
                try await client.query(
                    """
                    SELECT (SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'pending'),
                           (SELECT count(*) FROM job_logs)
                    """, logger: TestDatabase.logger
                ).collect().first!.decode((Int, Int).self)
            }
            #expect(pending == 100)
            #expect(logs == 2500 - expected)
        }
    }
}
