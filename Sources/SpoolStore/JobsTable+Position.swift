import Foundation
import Logging
import PostgresNIO

/// Pending jobs of one priority whose fair tags fall in one bucket of `JobsTable.positionBucketSize`.
public struct PendingBucket: Sendable, Equatable {
    public var priority: Int32
    public var bucket: Int64
    public var count: Int
}

// Queue positions: how many pending jobs of the model a claim takes before a given job.
// Claim order is priority descending, then fair tag, then id, so "ahead of job J" is an index
// range of the pending index (every tenant's jobs ahead are counted, none is named); counting a long range costs about 90 ms per million entries, so deep positions
// add up bucket counts (read in one pass and cached by the broker) and count only inside J's bucket.
extension JobsTable {
    /// Fair tags per bucket: the exact count inside one bucket reads about this many index entries per tenant.
    public static let positionBucketSize: Int64 = 1024

    /// Pending jobs ahead of the job with `id`, `priority` and `fairTag`, counted exactly.
    public func pendingAhead(
        model: String, priority: Int32, fairTag: Double, id: Int64, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        let rows = try await database.run(
            """
            SELECT (SELECT count(*) FROM jobs WHERE status = 'pending' AND model = \(model) AND priority > \(priority))
                 + (SELECT count(*) FROM jobs WHERE status = 'pending' AND model = \(model) AND priority = \(priority)
                                                AND fair_tag <= \(fairTag) AND (fair_tag, id) < (\(fairTag), \(id)))
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }

    /// Pending jobs ahead of the job with `id` within its own priority and fair-tag bucket, counted exactly.
    public func pendingAheadInBucket(
        model: String, priority: Int32, fairTag: Double, id: Int64, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        let start = Double(Self.positionBucket(of: fairTag) * Self.positionBucketSize)
        let rows = try await database.run(
            """
            SELECT count(*) FROM jobs
            WHERE status = 'pending' AND model = \(model) AND priority = \(priority) AND fair_tag >= \(start)
              -- Redundant with the row comparison, but the planner cannot estimate that one: without
              -- this bound it guessed a tenth of the queue and started parallel workers (9 ms, not 0.3).
              AND fair_tag <= \(fairTag) AND (fair_tag, id) < (\(fairTag), \(id))
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }

    /// The bucket a fair tag falls in.
    public static func positionBucket(of fairTag: Double) -> Int64 { Int64((fairTag / Double(positionBucketSize)).rounded(.down)) }

    /// Every bucket of the model's pending jobs, in claim order: one pass over its pending index.
    public func pendingBuckets(model: String, on database: some PostgresQueryable, logger: Logger) async throws -> [PendingBucket] {
        let rows = try await database.run(
            """
            SELECT priority, floor(fair_tag / \(Self.positionBucketSize))::int8 AS bucket, count(*)
            FROM jobs WHERE status = 'pending' AND model = \(model)
            GROUP BY priority, bucket
            ORDER BY priority DESC, bucket
            """, logger: logger)
        var buckets: [PendingBucket] = []
        for try await (priority, bucket, count) in rows.decode((Int32, Int64, Int).self) {
            buckets.append(PendingBucket(priority: priority, bucket: bucket, count: count))
        }
        return buckets
    }

    /// Each model's mean run time, claim to end, of its attempts that ended done or failed in the
    /// last `seconds` (the newest 100,000 at most, on `jobs_done_at`); a model with none is absent.
    public func meanRunSeconds(within seconds: Double, on database: some PostgresQueryable, logger: Logger) async throws -> [String: Double] {
        // A constant LIMIT: a parameter would be planned as unknown and could start the JIT.
        let rows = try await database.run(
            """
            SELECT model, avg(extract(epoch FROM done_at - claimed_at))::float8
            FROM (SELECT model, done_at, claimed_at FROM jobs
                  WHERE done_at > now() - make_interval(secs => \(seconds)) AND claimed_at IS NOT NULL AND status IN ('done', 'failed')
                  ORDER BY done_at DESC LIMIT 100000) AS recent
            GROUP BY model
            """, logger: logger)
        var means: [String: Double] = [:]
        for try await (model, mean) in rows.decode((String, Double).self) { means[model] = max(0, mean) }
        return means
    }

    /// Running jobs of a model, from its partial index.
    public func running(model: String, on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        try await database.run("SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'running'", logger: logger)
            .collect().first?.decode(Int.self) ?? 0
    }
}

