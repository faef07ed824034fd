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
    /// Attempts so far: 0 until the first claim.
    public var attempt: Int32
    /// Set while a running job is asked to stop.
    public var stopReason: StopReason?
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

    /// The channel that carries a model name whenever jobs of that model become pending.
    ///
    /// Brokers LISTEN on it to wake their waiting leases. NOTIFY is sent by the statement that
    /// makes the job pending, so it is delivered at commit, and PostgreSQL folds repeats of one
    /// model within a transaction into one.
    public static let pendingChannel = "spool_pending"

    /// Inserts a pending job and wakes the workers waiting for its model.
    public func insert(
        _ submit: SubmitRequest, requestID: UUID, submittedBy: String, on database: some PostgresQueryable, logger: Logger
    ) async throws {
        try await database.run(
            """
            WITH inserted AS (
                INSERT INTO jobs (request_id, model, priority, payload, info, submitted_by)
                VALUES (\(requestID), \(submit.model), \(submit.priority),
                        \(JSONValue.object(submit.payload).jsonText)::jsonb, \(JSONValue.object(submit.info).jsonText)::jsonb,
                        \(submittedBy))
                RETURNING model
            )
            SELECT pg_notify(\(Self.pendingChannel), model) FROM inserted
            """, logger: logger)
    }

    /// The job with this request id, if it belongs to `model`.
    public func find(model: String, requestID: UUID, on database: some PostgresQueryable, logger: Logger) async throws -> JobRecord? {
        let rows = try await database.run(
            """
            SELECT request_id, model, status, priority, payload::text, info::text, outputs::text, error, retries,
                   created_at, claimed_at, done_at, attempt, stop_reason
            FROM jobs WHERE request_id = \(requestID) AND model = \(model)
            """, logger: logger)
        for try await row in rows.decode(
            (UUID, String, String, Int32, String, String, String?, String?, Int32, Date, Date?, Date?, Int32, String?).self)
        {
            return JobRecord(
                requestID: row.0, model: row.1, status: try Self.status(row.2), priority: row.3,
                payload: try Self.object(row.4), info: try Self.object(row.5), outputs: try row.6.map(Self.object),
                error: row.7, retries: row.8, createdAt: row.9, claimedAt: row.10, doneAt: row.11, attempt: row.12,
                stopReason: row.13.flatMap(StopReason.init(rawValue:)))
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

    static func status(_ text: String) throws -> JobStatus {
        guard let status = JobStatus(rawValue: text) else {
            throw SpoolStoreError(description: "The jobs table holds an unknown status '\(text)'.")
        }
        return status
    }

    static func object(_ text: String) throws -> [String: JSONValue] {
        try JSONValue.parse(text).objectValue ?? [:]
    }
}
