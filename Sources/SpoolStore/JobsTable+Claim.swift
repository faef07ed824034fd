import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// A job handed to a worker by a claim: what it needs to run it and to fence its writes.
public struct ClaimedJob: Sendable, Equatable {
    public var id: Int64
    public var requestID: UUID
    public var model: String
    public var priority: Int32
    public var leaseToken: UUID
    public var attempt: Int32
    public var payload: [String: JSONValue]
    public var info: [String: JSONValue]
    public var leaseExpiresAt: Date
    public var runDeadlineAt: Date
    public var path: String?
    /// How long it waited in the queue before this claim, by the database's clock.
    public var queueWaitSeconds: Double
}

extension JobsTable {
    /// Claims up to `limit` pending jobs of `models`, highest priority first, then in submission order.
    ///
    /// Each claimed job gets a fresh lease token, a lease of `leaseSeconds` and a run deadline
    /// `maxRunSeconds` away, all from the database's clock. Concurrent claimers skip each other's
    /// rows, so no job is handed out twice.
    public func claim(
        models: [String], limit: Int, leaseSeconds: Double, maxRunSeconds: Double, workerID: String,
        on database: some PostgresQueryable, logger: Logger
    ) async throws -> [ClaimedJob] {
        // Per model, the first `limit` rows of the pending index (a short index scan each), then the
        // best `limit` of those. MATERIALIZED and `= ANY(ARRAY(…))` make the UPDATE touch exactly the
        // locked ids by primary key, whatever the planner thinks of the table's statistics (Oban and
        // pg-boss updated more rows than their limit when it thought otherwise).
        let rows = try await database.run(
            ClaimStatement(models: models, limit: limit, leaseSeconds: leaseSeconds, maxRunSeconds: maxRunSeconds, workerID: workerID),
            logger: logger)
        var claimed: [ClaimedJob] = []
        for try await row in rows {
            claimed.append(
                ClaimedJob(
                    id: row.0, requestID: row.1, model: row.2, priority: row.3, leaseToken: row.4, attempt: row.5,
                    payload: try Self.object(row.6), info: try Self.object(row.7), leaseExpiresAt: row.8, runDeadlineAt: row.9,
                    path: row.10, queueWaitSeconds: row.11))
        }
        // RETURNING does not keep the subquery's order; hand jobs out in claim order.
        return claimed.sorted { ($0.priority, -$0.id) > ($1.priority, -$1.id) }
    }

    /// Which of `models` have pending jobs: the long-poll's fallback when a NOTIFY went missing.
    public func modelsWithPendingJobs(
        _ models: [String], on database: some PostgresQueryable, logger: Logger
    ) async throws -> [String] {
        let rows = try await database.run(
            """
            SELECT wanted.model FROM unnest(\(models)::text[]) AS wanted(model)
            WHERE EXISTS (SELECT 1 FROM jobs WHERE status = 'pending' AND jobs.model = wanted.model)
            """, logger: logger)
        var found: [String] = []
        for try await model in rows.decode(String.self) { found.append(model) }
        return found
    }
}

/// The claim, prepared once per connection.
///
/// Per model, the first `limit` rows of the pending index (a short index scan each), then the
/// best `limit` of those. MATERIALIZED and `= ANY(ARRAY(…))` make the UPDATE touch exactly the
/// locked ids by primary key, whatever the planner thinks of the table's statistics (Oban and
/// pg-boss updated more rows than their limit when it thought otherwise).
struct ClaimStatement: PostgresPreparedStatement {
    static let name = "spool_claim_v1"
    static let sql = """
        WITH claimable AS MATERIALIZED (
            SELECT candidate.id
            FROM unnest($1::text[]) AS wanted(model)
            CROSS JOIN LATERAL (
                SELECT id, priority FROM jobs
                WHERE status = 'pending' AND model = wanted.model
                  -- A job past its start deadline is failed by the sweep, never started late.
                  AND (start_deadline_at IS NULL OR start_deadline_at > now())
                ORDER BY priority DESC, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            ) AS candidate
            ORDER BY candidate.priority DESC, candidate.id
            LIMIT $2
        )
        UPDATE jobs SET status = 'running',
                        attempt = attempt + 1,
                        lease_token = gen_random_uuid(),
                        lease_seconds = $3,
                        lease_expires_at = now() + make_interval(secs => $3),
                        run_deadline_at = now() + make_interval(secs => $4),
                        stop_reason = NULL,
                        claimed_at = now(),
                        worker_id = $5
        WHERE id = ANY (ARRAY(SELECT id FROM claimable)) AND status = 'pending'
        RETURNING id, request_id, model, priority, lease_token, attempt, payload::text, info::text, lease_expires_at,
                  run_deadline_at, path, extract(epoch FROM claimed_at - created_at)::float8
        """
    typealias Row = (Int64, UUID, String, Int32, UUID, Int32, String, String, Date, Date, String?, Double)

    var models: [String]
    var limit: Int
    var leaseSeconds: Double
    var maxRunSeconds: Double
    var workerID: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 5)
        bindings.append(models)
        bindings.append(limit)
        bindings.append(leaseSeconds)
        bindings.append(maxRunSeconds)
        bindings.append(workerID)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
