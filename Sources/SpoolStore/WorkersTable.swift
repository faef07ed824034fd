import Foundation
import Logging
import PostgresNIO

/// A worker as the broker last saw it.
package struct WorkerRecord: Sendable, Equatable {
    package var id: String
    package var host: String?
    package var models: [String]
    package var firstSeenAt: Date
    /// Its last lease request or, if later, its last heartbeat on a running job.
    package var lastSeenAt: Date
    /// Whether it is waiting in a long-poll now.
    package var waiting: Bool
    /// Jobs it is running now.
    package var jobsInHand: Int
    package var live: Bool
}

/// The `workers` table: written at each lease, read by operators and by the "why is it waiting" warnings.
package struct WorkersTable: Sendable {
    package init() {}

    /// How recently a worker must have leased or heartbeated to count as live.
    package static let liveSeconds: Double = 60

    /// Records a lease request: who, where, which models, and how long it will wait.
    package func sawLease(
        workerID: String, host: String?, models: [String], waitSeconds: Double, on database: some PostgresQueryable, logger: Logger
    ) async throws {
        try await database.run(
            """
            INSERT INTO workers (id, host, models, waiting_until)
            VALUES (\(workerID), \(host)::text, \(models)::text[], now() + make_interval(secs => \(waitSeconds)))
            ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, models = EXCLUDED.models, last_seen_at = now(),
                                           waiting_until = EXCLUDED.waiting_until
            """, logger: logger)
    }

    /// Every worker seen within `withinSeconds`, most recent first.
    package func list(withinSeconds: Double = 24 * 3600, on database: some PostgresQueryable, logger: Logger) async throws -> [WorkerRecord] {
        // A busy worker does not lease; its heartbeats show as the last beat on its running jobs'
        // leases (lease_expires_at - lease_seconds).
        let rows = try await database.run(
            """
            WITH busy AS (
                SELECT worker_id, count(*) AS jobs,
                       max(lease_expires_at - make_interval(secs => coalesce(lease_seconds, 30))) AS last_beat
                FROM jobs WHERE status = 'running' GROUP BY worker_id
            )
            SELECT w.id, w.host, w.models, w.first_seen_at, greatest(w.last_seen_at, busy.last_beat),
                   coalesce(w.waiting_until > now(), false), coalesce(busy.jobs, 0),
                   greatest(w.last_seen_at, busy.last_beat) > now() - make_interval(secs => \(Self.liveSeconds))
                       OR coalesce(w.waiting_until > now(), false)
            FROM workers w LEFT JOIN busy ON busy.worker_id = w.id
            WHERE greatest(w.last_seen_at, busy.last_beat) > now() - make_interval(secs => \(withinSeconds))
            ORDER BY 5 DESC
            """, logger: logger)
        var workers: [WorkerRecord] = []
        for try await row in rows.decode((String, String?, [String], Date, Date, Bool, Int, Bool).self) {
            workers.append(
                WorkerRecord(
                    id: row.0, host: row.1, models: row.2, firstSeenAt: row.3, lastSeenAt: row.4, waiting: row.5, jobsInHand: row.6,
                    live: row.7))
        }
        return workers
    }

    /// Live workers per model they serve.
    package func liveCounts(on database: some PostgresQueryable, logger: Logger) async throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for worker in try await list(withinSeconds: Self.liveSeconds * 2, on: database, logger: logger) where worker.live {
            for model in worker.models { counts[model, default: 0] += 1 }
        }
        return counts
    }

    /// Forgets workers not seen for `olderThanSeconds`; returns how many.
    package func prune(olderThanSeconds: Double, now: Date? = nil, on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        let rows = try await database.run(
            """
            WITH gone AS (
                DELETE FROM workers WHERE last_seen_at < \(secondsAgo: olderThanSeconds, clock: now)
                  AND NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND worker_id = workers.id)
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }
}
