import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// A job handed to a worker by a claim: the lease answer's entry for it, and what the broker keeps
/// to fence, hand back and count it.
package struct ClaimedJob: Sendable, Equatable {
    package var id: Int64
    package var requestID: UUID
    package var leaseToken: UUID
    /// What the worker is handed, as it reads it.
    package var leased: LeasedJob
    /// How long it waited in the queue before this claim, by the database's clock.
    package var queueWaitSeconds: Double

    package var model: String { leased.model }
    package var priority: Int32 { leased.priority }
    package var attempt: Int32 { leased.attempt }
    package var payload: [String: JSONValue] { leased.payload }

    /// A claimed job from its columns.
    package init(
        id: Int64, requestID: UUID, model: String, priority: Int32, leaseToken: UUID, attempt: Int32, payload: [String: JSONValue],
        info: [String: JSONValue], leaseExpiresAt: Date, runDeadlineAt: Date, path: String?, queueWaitSeconds: Double
    ) {
        self.id = id
        self.requestID = requestID
        self.leaseToken = leaseToken
        self.leased = LeasedJob(
            request_id: requestID.uuidString.lowercased(), model: model, lease_token: leaseToken.uuidString.lowercased(), attempt: attempt,
            priority: priority, payload: payload, info: info, lease_expires_at: leaseExpiresAt, run_deadline_at: runDeadlineAt, path: path)
        self.queueWaitSeconds = queueWaitSeconds
    }
}

/// Per tenant, how many jobs of one model may run at once; the claim starts no more.
package struct RunningLimits: Sendable, Equatable {
    /// Tenants with their own limit (nil: no limit for that tenant).
    package var byTenant: [String: Int?]
    /// The limit of every other tenant (nil: none).
    package var everyTenant: Int?

    package init(byTenant: [String: Int?] = [:], everyTenant: Int? = nil) {
        self.byTenant = byTenant
        self.everyTenant = everyTenant
    }

    package static let none = RunningLimits()
    package var isEmpty: Bool { everyTenant == nil && byTenant.values.allSatisfy { $0 == nil } }
}

extension JobsTable {
    /// The most jobs one claim takes (a lease takes at most 100): a constant in the claim's SQL.
    package static let maxClaimLimit = 1000

    /// Claims up to `limit` pending jobs of `models`: highest priority first, then the smallest
    /// fair-share tag (tenants in turn), then submission order; no tenant past its running limit.
    ///
    /// Each claimed job gets a fresh lease token, a lease of `leaseSeconds` and a run deadline
    /// `maxRunSeconds` away, all from the database's clock. Concurrent claimers skip each other's
    /// rows, so no job is handed out twice.
    package func claim(
        models: [String], limit: Int, leaseSeconds: Double, maxRunSeconds: Double, workerID: String,
        runningLimits: RunningLimits = .none, on database: some PostgresQueryable, logger: Logger
    ) async throws -> [ClaimedJob] {
        precondition((1...Self.maxClaimLimit).contains(limit), "a claim takes 1 to \(Self.maxClaimLimit) jobs")
        // Without running limits (the usual case) the short statement: it plans in a fraction of the time.
        let claim = ClaimStatement(models: models, limit: limit, leaseSeconds: leaseSeconds, maxRunSeconds: maxRunSeconds, workerID: workerID)
        let rows: [ClaimStatement.Row]
        if runningLimits.isEmpty {
            rows = try await database.run(claim, logger: logger).collect()
        } else {
            rows = try await database.run(LimitedClaimStatement(claim: claim, runningLimits: runningLimits), logger: logger).collect()
        }
        var claimed: [(job: ClaimedJob, tag: Double)] = []
        for row in rows {
            claimed.append(
                (
                    ClaimedJob(
                        id: row.0, requestID: row.1, model: row.2, priority: row.3, leaseToken: row.4, attempt: row.5,
                        payload: try Self.object(row.6), info: try Self.object(row.7), leaseExpiresAt: row.8, runDeadlineAt: row.9,
                        path: row.10, queueWaitSeconds: row.11), row.12
                ))
        }
        // RETURNING does not keep the subquery's order; hand jobs out in claim order.
        return claimed.sorted { ($0.job.priority, -$0.tag, -$0.job.id) > ($1.job.priority, -$1.tag, -$1.job.id) }.map(\.job)
    }

    /// Which of `models` have pending jobs: the long-poll's fallback when a NOTIFY went missing.
    package func modelsWithPendingJobs(
        _ models: [String], on database: some PostgresQueryable, logger: Logger
    ) async throws -> [String] {
        let rows = try await database.run(
            """
            SELECT wanted.model FROM unnest(\(models)::text[]) AS wanted(model)
            WHERE EXISTS (SELECT 1 FROM jobs WHERE status = \(JobsTable.claim.from.sql) AND jobs.model = wanted.model)
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
    static let name = "spool_claim_v4"
    static let sql = """
        WITH claimable AS MATERIALIZED (
            SELECT candidate.id
            FROM unnest($1::text[]) AS wanted(model)
            CROSS JOIN LATERAL (
                SELECT id, priority, fair_tag FROM jobs
                WHERE status = \(JobsTable.claim.from.sql) AND model = wanted.model
                  -- A job past its start deadline is failed by the sweep, never started late.
                  AND (start_deadline_at IS NULL OR start_deadline_at > now())
                ORDER BY priority DESC, fair_tag, id
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            ) AS candidate
            ORDER BY candidate.priority DESC, candidate.fair_tag, candidate.id
            LIMIT $2
        )
        \(JobsTable.claimUpdateSQL)
        """
    typealias Row = (Int64, UUID, String, Int32, UUID, Int32, String, String, Date, Date, String?, Double, Double)

    var models: [String]
    var limit: Int
    var leaseSeconds: Double
    var maxRunSeconds: Double
    var workerID: String

    func makeBindings() throws -> PostgresBindings {
        .values(models, limit, leaseSeconds, maxRunSeconds, workerID)
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

extension JobsTable {
    /// What a claim reads and writes: pending jobs become running.
    static let claim = JobStateMachine.edge(.claim)

    /// Both claims' last step: the locked ids become running, each with a fresh lease.
    static let claimUpdateSQL = """
        UPDATE jobs SET status = \(claim.to.sql),
                        attempt = attempt + 1,
                        lease_token = gen_random_uuid(),
                        lease_seconds = $3,
                        lease_expires_at = now() + make_interval(secs => $3),
                        run_deadline_at = now() + make_interval(secs => least($4, coalesce(max_run_seconds, $4))),
                        stop_reason = NULL,
                        claimed_at = now(),
                        worker_id = $5
        WHERE id = ANY (ARRAY(SELECT id FROM claimable)) AND status = \(claim.from.sql)
        RETURNING id, request_id, model, priority, lease_token, attempt, payload::text, info::text, lease_expires_at,
                  run_deadline_at, path, extract(epoch FROM claimed_at - created_at)::float8, fair_tag
        """
}

extension JobsTable {
    /// The first `$2` claimable rows of one pending index range (`condition` picks it), locked: the
    /// candidates of the claim with running limits, with and without limits set.
    static func limitedClaimHead(where condition: String) -> String {
        """
        SELECT * FROM (
            SELECT id, priority, fair_tag, model, tenant FROM jobs
            WHERE status = \(claim.from.sql) AND \(condition)
              -- A job past its start deadline is failed by the sweep, never started late.
              AND (start_deadline_at IS NULL OR start_deadline_at > now())
            ORDER BY priority DESC, fair_tag, id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) AS head LIMIT \(maxClaimLimit)
        """
    }
}

/// The claim with running limits per tenant, prepared once per connection.
///
/// Tenants at their limit are skipped, and the rest take at most their room.
struct LimitedClaimStatement: PostgresPreparedStatement {
    static let name = "spool_claim_limited_v2"
    static let sql = """
        WITH quota AS (
            SELECT tenant, nullif(max_running, -1) AS max_running FROM unnest($6::text[], $7::int4[]) AS quota(tenant, max_running)
        ), room AS MATERIALIZED (
            -- Only with limits set: running jobs are few (one per busy GPU), counted per model and tenant.
            SELECT running.model, running.tenant,
                   coalesce((SELECT max_running FROM quota WHERE quota.tenant = running.tenant), nullif($8, -1)) - running.count AS room
            FROM (SELECT model, tenant, count(*) AS count FROM jobs
                  WHERE status = 'running' AND model = ANY ($1::text[]) AND $9::bool
                  GROUP BY model, tenant) AS running
        ), candidates AS MATERIALIZED (
            -- Without running limits: per model, the first $2 rows of its pending index.
            SELECT candidate.id, candidate.priority, candidate.fair_tag, candidate.model, candidate.tenant
            FROM unnest($1::text[]) AS wanted(model)
            CROSS JOIN LATERAL (
                -- The constant limit keeps the planner's estimates (a parameter's is a tenth of the
                -- table) small: a large estimated cost turns on JIT, which took a second per claim.
                \(JobsTable.limitedClaimHead(where: "model = wanted.model AND NOT $9::bool"))
            ) AS candidate
            UNION ALL
            -- With running limits: per model and per tenant with room, its first $2 rows of the
            -- per-tenant index, so a claim never reads through a backlog of a tenant at its limit.
            SELECT candidate.id, candidate.priority, candidate.fair_tag, candidate.model, candidate.tenant
            FROM unnest($1::text[]) AS wanted(model)
            CROSS JOIN LATERAL (
                SELECT DISTINCT tenant FROM fair_share_tags
                WHERE model = wanted.model AND $9::bool
                  AND NOT EXISTS (
                      SELECT 1 FROM room WHERE room.model = wanted.model AND room.tenant = fair_share_tags.tenant AND room.room <= 0)
            ) AS open
            CROSS JOIN LATERAL (
                \(JobsTable.limitedClaimHead(where: "tenant = open.tenant AND model = wanted.model"))
            ) AS candidate
        ), claimable AS MATERIALIZED (
            SELECT id FROM (
                SELECT candidates.*,
                       row_number() OVER (PARTITION BY candidates.model, candidates.tenant ORDER BY priority DESC, fair_tag, id) AS nth,
                       coalesce((SELECT room.room FROM room WHERE room.model = candidates.model AND room.tenant = candidates.tenant),
                                coalesce((SELECT max_running FROM quota WHERE quota.tenant = candidates.tenant), nullif($8, -1))) AS room
                FROM candidates
            ) AS ranked
            WHERE room IS NULL OR nth <= room
            ORDER BY priority DESC, fair_tag, id
            LIMIT $2
        )
        \(JobsTable.claimUpdateSQL)
        """
    typealias Row = ClaimStatement.Row

    /// The claim's own parameters come first ($1 to $5), the limits after.
    var claim: ClaimStatement
    var runningLimits: RunningLimits

    func makeBindings() throws -> PostgresBindings {
        var bindings = try claim.makeBindings()
        let tenants = runningLimits.byTenant.keys.sorted()
        bindings.append(tenants)
        bindings.append(tenants.map { Int32(clamping: runningLimits.byTenant[$0]!.map { max($0, 0) } ?? -1) })
        bindings.append(Int32(clamping: runningLimits.everyTenant.map { max($0, 0) } ?? -1))
        bindings.append(!runningLimits.isEmpty)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
