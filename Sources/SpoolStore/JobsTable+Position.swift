import Foundation
import Logging
import PostgresNIO

/// Pending jobs of one priority whose fair tags fall in one bucket of `JobsTable.positionBucketSize`.
package struct PendingBucket: Sendable, Equatable {
    package var priority: Int32
    package var bucket: Int64
    package var count: Int
}

// Queue positions: how many pending jobs of the model a claim takes before a given job.
// Claim order is priority descending, then fair tag, then id, so "ahead of job J" is an index
// range of the pending index (every tenant's jobs ahead are counted, none is named); counting a long range costs about 90 ms per million entries, so deep positions
// add up bucket counts (read in one pass and cached by the broker) and count only inside J's bucket.
extension JobsTable {
    /// Fair tags per bucket: the exact count inside one bucket reads about this many index entries per tenant.
    package static let positionBucketSize: Int64 = 1024

    /// Pending jobs ahead of the job with `id`, `priority` and `fairTag`, counted exactly.
    package func pendingAhead(
        model: String, priority: Int32, fairTag: Double, id: Int64, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        let statement = PendingAheadStatement(model: model, priority: priority, fairTag: fairTag, id: id)
        for try await count in try await database.run(statement, logger: logger) { return count }
        return 0
    }

    /// Pending jobs ahead of the job with `id` within its own priority and fair-tag bucket, counted exactly.
    package func pendingAheadInBucket(
        model: String, priority: Int32, fairTag: Double, id: Int64, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        let start = Double(Self.positionBucket(of: fairTag) * Self.positionBucketSize)
        let statement = PendingAheadInBucketStatement(model: model, priority: priority, bucketStart: start, fairTag: fairTag, id: id)
        for try await count in try await database.run(statement, logger: logger) { return count }
        return 0
    }

    /// The bucket a fair tag falls in.
    package static func positionBucket(of fairTag: Double) -> Int64 { Int64((fairTag / Double(positionBucketSize)).rounded(.down)) }

    /// Every bucket of the model's pending jobs, in claim order: one pass over its pending index.
    package func pendingBuckets(model: String, on database: some PostgresQueryable, logger: Logger) async throws -> [PendingBucket] {
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
    package func meanRunSeconds(within seconds: Double, on database: some PostgresQueryable, logger: Logger) async throws -> [String: Double] {
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
    package func running(model: String, on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        try await database.run("SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'running'", logger: logger)
            .collect().first?.decode(Int.self) ?? 0
    }
}

// The two counts under every pending job's status read, prepared: planning them each time cost
// about as much as counting. Their plans do not depend on the values (always the pending index).

/// Pending jobs ahead of a job: every higher priority, then its own up to its (fair tag, id).
struct PendingAheadStatement: PostgresPreparedStatement {
    static let name = "spool_pending_ahead_v1"
    static let sql = """
        SELECT (SELECT count(*) FROM jobs WHERE status = 'pending' AND model = $1 AND priority > $2)
             + (SELECT count(*) FROM jobs WHERE status = 'pending' AND model = $1 AND priority = $2
                                            AND fair_tag <= $3 AND (fair_tag, id) < ($3, $4))
        """
    typealias Row = Int

    var model: String
    var priority: Int32
    var fairTag: Double
    var id: Int64

    func makeBindings() throws -> PostgresBindings {
        .values(model, priority, fairTag, id)
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int.self) }
}

/// Pending jobs ahead of a job within its own priority and fair-tag bucket.
struct PendingAheadInBucketStatement: PostgresPreparedStatement {
    static let name = "spool_pending_ahead_in_bucket_v1"
    static let sql = """
        SELECT count(*) FROM jobs
        WHERE status = 'pending' AND model = $1 AND priority = $2 AND fair_tag >= $3
          -- Redundant with the row comparison, but the planner cannot estimate that one: without
          -- this bound it guessed a tenth of the queue and started parallel workers (9 ms, not 0.3).
          AND fair_tag <= $4 AND (fair_tag, id) < ($4, $5)
        """
    typealias Row = Int

    var model: String
    var priority: Int32
    var bucketStart: Double
    var fairTag: Double
    var id: Int64

    func makeBindings() throws -> PostgresBindings {
        .values(model, priority, bucketStart, fairTag, id)
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Int.self) }
}
