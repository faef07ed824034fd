import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// A job as stored, for status reads.
public struct JobRecord: Sendable, Equatable {
    public var requestID: UUID
    public var model: String
    public var status: JobStatus
    public var priority: Int32
    public var payload: [String: JSONValue]
    public var info: [String: JSONValue]
    public var outputs: [String: JSONValue]?
    public var error: String?
    public var retries: Int32
    public var createdAt: Date
    public var claimedAt: Date?
    public var doneAt: Date?
}

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
}

/// What a cancel found.
public enum CancelOutcome: Sendable, Equatable {
    /// The job was pending and is now canceled.
    case canceled
    /// The job had left `pending`; it is unchanged and has this status.
    case unchanged(JobStatus)
    /// No job with that request id exists for that model.
    case notFound
}

/// The `jobs` table: every query on it, each written once.
public struct JobsTable: Sendable {
    public init() {}

    /// Inserts a pending job.
    public func insert(
        _ submit: SubmitRequest, requestID: UUID, submittedBy: String, on database: some PostgresQueryable, logger: Logger
    ) async throws {
        try await database.run(
            """
            INSERT INTO jobs (request_id, model, priority, payload, info, submitted_by)
            VALUES (\(requestID), \(submit.model), \(submit.priority),
                    \(JSONValue.object(submit.payload).jsonText)::jsonb, \(JSONValue.object(submit.info).jsonText)::jsonb,
                    \(submittedBy))
            """, logger: logger)
    }

    /// The job with this request id, if it belongs to `model`.
    public func find(model: String, requestID: UUID, on database: some PostgresQueryable, logger: Logger) async throws -> JobRecord? {
        let rows = try await database.run(
            """
            SELECT request_id, model, status, priority, payload::text, info::text, outputs::text, error, retries,
                   created_at, claimed_at, done_at
            FROM jobs WHERE request_id = \(requestID) AND model = \(model)
            """, logger: logger)
        for try await row in rows.decode(
            (UUID, String, String, Int32, String, String, String?, String?, Int32, Date, Date?, Date?).self)
        {
            return JobRecord(
                requestID: row.0, model: row.1, status: try Self.status(row.2), priority: row.3,
                payload: try Self.object(row.4), info: try Self.object(row.5), outputs: try row.6.map(Self.object),
                error: row.7, retries: row.8, createdAt: row.9, claimedAt: row.10, doneAt: row.11)
        }
        return nil
    }

    /// Cancels a pending job; any other status is left as it is and reported.
    public func cancel(model: String, requestID: UUID, on database: some PostgresQueryable, logger: Logger) async throws -> CancelOutcome {
        // One statement: the UPDATE only touches a pending row; the outer SELECT reports what it found.
        let rows = try await database.run(
            """
            WITH canceled AS (
                UPDATE jobs SET status = 'canceled', done_at = now()
                WHERE request_id = \(requestID) AND model = \(model) AND status = 'pending'
                RETURNING status
            )
            SELECT status, true FROM canceled
            UNION ALL
            SELECT status, false FROM jobs
            WHERE request_id = \(requestID) AND model = \(model) AND NOT EXISTS (SELECT 1 FROM canceled)
            """, logger: logger)
        for try await (status, changed) in rows.decode((String, Bool).self) {
            return changed ? .canceled : .unchanged(try Self.status(status))
        }
        return .notFound
    }

    /// Cancels every pending job of a model; returns how many.
    public func cancelPending(model: String, on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        let rows = try await database.run(
            """
            WITH canceled AS (
                UPDATE jobs SET status = 'canceled', done_at = now()
                WHERE model = \(model) AND status = 'pending'
                RETURNING 1
            )
            SELECT count(*) FROM canceled
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }

    /// Jobs waiting and running for a model, each counted from its own partial index.
    public func depth(model: String, on database: some PostgresQueryable, logger: Logger) async throws -> (waiting: Int, running: Int) {
        let rows = try await database.run(
            """
            SELECT (SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'pending'),
                   (SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'running')
            """, logger: logger)
        let row = try await rows.collect().first?.decode((Int, Int).self) ?? (0, 0)
        return (row.0, row.1)
    }

    /// Claims up to `limit` pending jobs of `model`, highest priority first, then in submission order.
    ///
    /// Each claimed job gets a fresh lease token and a lease of `leaseSeconds` from the
    /// database's clock. Concurrent claimers skip each other's rows, so no job is handed out twice.
    public func claim(
        model: String, limit: Int, leaseSeconds: Double, workerID: String,
        on database: some PostgresQueryable, logger: Logger
    ) async throws -> [ClaimedJob] {
        // MATERIALIZED: the locked ids are computed once, so the UPDATE cannot touch more
        // than `limit` rows whatever plan the planner picks (Oban and pg-boss were bitten).
        let rows = try await database.run(
            """
            WITH claimable AS MATERIALIZED (
                SELECT id FROM jobs
                WHERE status = 'pending' AND model = \(model)
                ORDER BY priority DESC, id
                LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs SET status = 'running',
                            attempt = attempt + 1,
                            lease_token = gen_random_uuid(),
                            lease_expires_at = now() + make_interval(secs => \(leaseSeconds)),
                            claimed_at = now(),
                            worker_id = \(workerID)
            WHERE id IN (SELECT id FROM claimable) AND status = 'pending'
            RETURNING id, request_id, model, priority, lease_token, attempt, payload::text, info::text, lease_expires_at
            """, logger: logger)
        var claimed: [ClaimedJob] = []
        for try await row in rows.decode((Int64, UUID, String, Int32, UUID, Int32, String, String, Date).self) {
            claimed.append(
                ClaimedJob(
                    id: row.0, requestID: row.1, model: row.2, priority: row.3, leaseToken: row.4, attempt: row.5,
                    payload: try Self.object(row.6), info: try Self.object(row.7), leaseExpiresAt: row.8))
        }
        // RETURNING does not keep the subquery's order; hand jobs out in claim order.
        return claimed.sorted { ($0.priority, -$0.id) > ($1.priority, -$1.id) }
    }

    private static func status(_ text: String) throws -> JobStatus {
        guard let status = JobStatus(rawValue: text) else {
            throw SpoolStoreError(description: "The jobs table holds an unknown status '\(text)'.")
        }
        return status
    }

    private static func object(_ text: String) throws -> [String: JSONValue] {
        try JSONValue.parse(text).objectValue ?? [:]
    }
}
