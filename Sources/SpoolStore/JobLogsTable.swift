import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// A stored log line of a job.
package struct JobLogRecord: Sendable, Equatable {
    package var id: Int64
    package var attempt: Int32
    package var loggedAt: Date
    package var level: String
    package var source: String
    package var message: String
}

/// The `job_logs` table. Lines are written by the lease protocol's statements (JobsTable+Lease),
/// in the same statement as the heartbeat or result they came with.
package struct JobLogsTable: Sendable {
    package init() {}

    /// The insert of a worker write's lines, up to its FROM: `attempts` names the statement's rows of
    /// the attempts written (with `id` and `attempt`), and the FROM gives `line` (level, source, message, logged_at).
    static func insertSQL(attempts: String) -> String {
        """
        INSERT INTO job_logs (job_id, attempt, level, source, message, logged_at)
        SELECT \(attempts).id, \(attempts).attempt, line.level, line.source, line.message,
               coalesce(nullif(line.logged_at, '')::timestamptz, now())
        """
    }

    /// A job's lines after `afterID`, oldest first.
    package func list(
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
    package func list(requestID: UUID, newest: Int, on database: some PostgresQueryable, logger: Logger) async throws -> [JobLogRecord] {
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

/// Log lines as parallel arrays, for `unnest` in one INSERT.
struct LogColumns {
    var levels: [String] = []
    var sources: [String] = []
    var messages: [String] = []
    /// RFC 3339 text, or empty for "when the broker wrote it".
    var times: [String] = []
    /// The messages' bytes, for the job's log counters.
    var bytes: Int64 = 0

    var count: Int32 { Int32(messages.count) }

    init(_ lines: [JobLogLine]) {
        for line in lines {
            levels.append(line.level)
            sources.append(line.source)
            // PostgreSQL text cannot hold NUL.
            let message = line.message.replacingOccurrences(of: "\u{0}", with: "")
            messages.append(message)
            bytes += Int64(message.utf8.count)
            times.append(line.timestamp ?? "")
        }
    }
}

extension PostgresQuery.StringInterpolation {
    /// The insert of one attempt's lines, `attempts` naming the statement's row of it.
    mutating func appendInterpolation(insertingLogs logs: LogColumns, of attempts: String) {
        appendInterpolation(unescaped: JobLogsTable.insertSQL(attempts: attempts) + "\nFROM \(attempts), unnest(")
        appendInterpolation(logs.levels)
        appendInterpolation(unescaped: "::text[], ")
        appendInterpolation(logs.sources)
        appendInterpolation(unescaped: "::text[], ")
        appendInterpolation(logs.messages)
        appendInterpolation(unescaped: "::text[], ")
        appendInterpolation(logs.times)
        appendInterpolation(unescaped: "::text[]) AS line(level, source, message, logged_at)")
    }
}
