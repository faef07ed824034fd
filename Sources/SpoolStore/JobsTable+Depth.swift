import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// How deep one model's queue is.
package struct ModelDepth: Sendable, Equatable {
    package var model: String
    package var waiting: Int
    package var running: Int
    /// Waiting jobs per priority tier.
    package var waitingByPriority: [Int32: Int]
    /// Seconds the oldest waiting job has waited; 0 when none waits.
    package var oldestWaitingSeconds: Double

    package init(model: String, waiting: Int, running: Int, waitingByPriority: [Int32: Int], oldestWaitingSeconds: Double) {
        self.model = model
        self.waiting = waiting
        self.running = running
        self.waitingByPriority = waitingByPriority
        self.oldestWaitingSeconds = oldestWaitingSeconds
    }
}

// Queue depth for metrics and autoscaling, read on an interval by each broker (not per scrape):
// one pass over the pending index grouped by model and priority, and the small running set.
extension JobsTable {
    package func depthOfEveryModel(on database: some PostgresQueryable, logger: Logger) async throws -> [ModelDepth] {
        let rows = try await database.run(
            """
            WITH tiers AS (
                SELECT model, priority, count(*) AS waiting, min(id) AS first_id
                FROM jobs WHERE status = 'pending' GROUP BY model, priority
            ), oldest AS (
                -- The first job of each tier is its oldest; one primary-key lookup per tier.
                SELECT tiers.model, min(jobs.created_at) AS created_at
                FROM tiers JOIN jobs ON jobs.id = tiers.first_id GROUP BY tiers.model
            ), running AS (
                SELECT model, count(*) AS running FROM jobs WHERE status = 'running' GROUP BY model
            )
            SELECT coalesce(tiers.model, running.model), tiers.priority, coalesce(tiers.waiting, 0), coalesce(running.running, 0),
                   coalesce(extract(epoch FROM now() - oldest.created_at)::float8, 0)
            FROM tiers
            FULL JOIN running ON running.model = tiers.model
            LEFT JOIN oldest ON oldest.model = tiers.model
            """, logger: logger)
        var depths: [String: ModelDepth] = [:]
        for try await (model, priority, waiting, running, oldest) in rows.decode((String, Int32?, Int, Int, Double).self) {
            var depth = depths[model] ?? ModelDepth(model: model, waiting: 0, running: running, waitingByPriority: [:], oldestWaitingSeconds: oldest)
            if let priority {
                depth.waiting += waiting
                depth.waitingByPriority[priority] = waiting
            }
            depths[model] = depth
        }
        return depths.values.sorted { $0.model < $1.model }
    }

    /// Deletes up to `batchSize` jobs that ended more than `retentionSeconds` ago, oldest first;
    /// their log lines and webhook deliveries go with them; lines of batches still running stay. Returns how many.
    package func pruneFinished(
        retentionSeconds: Double, batchSize: Int, now: Date? = nil, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        // Small batches through the done_at index, skipping rows anyone holds: the queue is never blocked.
        let rows = try await database.run(
            """
            WITH old AS (
                SELECT id FROM jobs
                WHERE done_at < \(secondsAgo: retentionSeconds, clock: now)
                  AND status IN (\(JobStatus.allCases.filter(\.isTerminal)))
                  -- A batch still running needs its finished lines for its output file.
                  AND (batch_id IS NULL OR NOT EXISTS (
                      SELECT 1 FROM batches b WHERE b.id = jobs.batch_id AND b.status IN (\(BatchStatus.allCases.filter { !$0.isTerminal }))))
                  -- A webhook still being delivered keeps its job (its delivery would go with it).
                  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.job_id = jobs.id AND d.state = 'pending')
                ORDER BY done_at
                LIMIT \(batchSize)
                FOR UPDATE SKIP LOCKED
            ), pruned AS (
                DELETE FROM jobs WHERE id = ANY (ARRAY(SELECT id FROM old)) RETURNING request_id
            ), outputs AS (
                -- The files the pruned jobs' workers returned go with them.
                DELETE FROM files WHERE request_id = ANY (ARRAY(SELECT request_id FROM pruned)) AND purpose = 'job-output'
            )
            SELECT count(*) FROM pruned
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }
}

/// How a model's jobs ended lately.
package struct RecentJobCounts: Sendable, Equatable {
    package var completed: Int
    package var failed: Int
    /// Jobs that ended after more than one attempt.
    package var retried: Int
}

extension JobsTable {
    /// The most recently ended jobs one count reads: a model ending more jobs than that in the
    /// window is counted up to it, so the read stays bounded.
    package static let maxRecentJobsCounted = 100_000

    /// Jobs of `model` that ended within the last `withinSeconds` (RunPod's `/health`).
    package func recentCounts(
        model: String, withinSeconds: Double = 3600, on database: some PostgresQueryable, logger: Logger
    ) async throws -> RecentJobCounts {
        // A constant LIMIT: a parameter would be planned as unknown and could start the JIT.
        let rows = try await database.run(
            """
            SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE retries > 0)
            FROM (SELECT status, retries FROM jobs
                  WHERE model = \(model) AND done_at > now() - make_interval(secs => \(withinSeconds))
                  LIMIT \(unescaped: String(Self.maxRecentJobsCounted))) AS recent
            """, logger: logger)
        guard let (completed, failed, retried) = try await rows.collect().first?.decode((Int, Int, Int).self) else {
            return RecentJobCounts(completed: 0, failed: 0, retried: 0)
        }
        return RecentJobCounts(completed: completed, failed: failed, retried: retried)
    }
}
