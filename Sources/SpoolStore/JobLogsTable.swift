import Foundation
import Logging
import PostgresNIO

/// A stored log line of a job.
public struct JobLogRecord: Sendable, Equatable {
    public var id: Int64
    public var attempt: Int32
    public var loggedAt: Date
    public var level: String
    public var source: String
    public var message: String
}

/// The `job_logs` table. Lines are written by the lease protocol's statements (JobsTable+Lease),
/// in the same statement as the heartbeat or result they came with.
public struct JobLogsTable: Sendable {
    public init() {}

    /// A job's lines after `afterID`, oldest first.
    public func list(
        requestID: UUID, afterID: Int64 = 0, limit: Int = 1000, on database: some PostgresQueryable, logger: Logger
    ) async throws -> [JobLogRecord] {
        let rows = try await database.run(
            """
            SELECT job_logs.id, job_logs.attempt, job_logs.logged_at, job_logs.level, job_logs.source, job_logs.message
            FROM job_logs JOIN jobs ON jobs.id = job_logs.job_id
            WHERE jobs.request_id = \(requestID) AND job_logs.id > \(afterID)
            ORDER BY job_logs.id
            LIMIT \(limit)
            """, logger: logger)
        return try await Self.lines(rows)
    }

    /// A job's newest `newest` lines, oldest first.
    public func list(requestID: UUID, newest: Int, on database: some PostgresQueryable, logger: Logger) async throws -> [JobLogRecord] {
        let rows = try await database.run(
            """
            SELECT id, attempt, logged_at, level, source, message FROM (
                SELECT job_logs.id, job_logs.attempt, job_logs.logged_at, job_logs.level, job_logs.source, job_logs.message
                FROM job_logs JOIN jobs ON jobs.id = job_logs.job_id
                WHERE jobs.request_id = \(requestID)
                ORDER BY job_logs.id DESC
                LIMIT \(newest)
            ) AS newest ORDER BY id
            """, logger: logger)
        return try await Self.lines(rows)
    }

    private static func lines(_ rows: Rows<PostgresRow>) async throws -> [JobLogRecord] {
        var lines: [JobLogRecord] = []
        for try await (id, attempt, loggedAt, level, source, message) in rows.decode((Int64, Int32, Date, String, String, String).self) {
            lines.append(JobLogRecord(id: id, attempt: attempt, loggedAt: loggedAt, level: level, source: source, message: message))
        }
        return lines
    }
}
