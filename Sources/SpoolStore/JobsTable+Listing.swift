import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// What the dashboard's job list filters on; every field is optional.
package struct JobListFilter: Sendable, Equatable {
    package var model: String?
    package var status: JobStatus?
    package var priority: Int32?
    package var createdAfter: Date?
    package var createdBefore: Date?
    /// Lowercase hex digits a request id starts with (1–32, dashes removed).
    package var requestIDPrefix: String?
    /// Only this tenant's jobs; nil: every tenant's.
    package var tenant: String?

    package init(
        model: String? = nil, status: JobStatus? = nil, priority: Int32? = nil, createdAfter: Date? = nil, createdBefore: Date? = nil,
        requestIDPrefix: String? = nil, tenant: String? = nil
    ) {
        self.model = model
        self.status = status
        self.priority = priority
        self.createdAfter = createdAfter
        self.createdBefore = createdBefore
        self.requestIDPrefix = requestIDPrefix
        self.tenant = tenant
    }
}

/// Where the next page starts: below a job id (newest first), or after a request id (a prefix search).
package enum JobListCursor: Sendable, Equatable {
    case beforeID(Int64)
    case afterRequestID(UUID)

    /// The opaque text a client sends back: `i<id>` or `r<uuid>`.
    package var text: String {
        switch self {
        case .beforeID(let id): "i\(id)"
        case .afterRequestID(let id): "r\(id.uuidString.lowercased())"
        }
    }

    package init?(text: String) {
        guard let kind = text.first else { return nil }
        let rest = String(text.dropFirst())
        switch kind {
        case "i":
            guard let id = Int64(rest), id > 0 else { return nil }
            self = .beforeID(id)
        case "r":
            guard let id = UUID(uuidString: rest) else { return nil }
            self = .afterRequestID(id)
        default: return nil
        }
    }
}

/// One row of the job list: what a table shows, not the payload.
package struct JobListRow: Sendable, Equatable {
    package var id: Int64
    package var requestID: UUID
    package var model: String
    package var status: JobStatus
    package var priority: Int32
    package var retries: Int32
    package var createdAt: Date
    package var claimedAt: Date?
    package var doneAt: Date?
    package var errorType: String?
    package var workerID: String?
    /// `info.progress` when it is a number.
    package var progress: Double?
}

/// A page of the job list and where the next one starts (nil: nothing older, or nothing after).
package struct JobListPage: Sendable, Equatable {
    package var rows: [JobListRow]
    package var nextCursor: JobListCursor?
    /// Index entries the page read when it stopped short of its limit (a sparse filter); nil when the page filled.
    package var scanned: Int?
}

/// Jobs that ended in one minute of the last hour, per model and end status.
package struct FinishedMinute: Sendable, Equatable {
    package var model: String
    package var status: JobStatus
    /// 0: the current minute, 59: the oldest.
    package var minutesAgo: Int
    package var count: Int
}

/// The last hour's ends, counted per minute, and whether the count stopped at its bound.
package struct FinishedHistory: Sendable, Equatable {
    package var now: Date
    package var minutes: [FinishedMinute]
    /// The newest `maxHistoryJobs` ends were counted and older ones in the hour were not.
    package var capped: Bool
}

// The dashboard's reads: a keyset-paged job list whose every page reads a bounded slice of one
// index, and the per-minute ends of the last hour.
extension JobsTable {
    /// The most index entries one page reads: a filter that matches rarely answers a short (even
    /// empty) page with a cursor, instead of walking millions of rows in one request.
    package static let maxListScan = 20_000
    /// The most rows a page holds.
    package static let maxListLimit = 200
    /// The most ends the history counts (the newest); past it, its older minutes are short.
    package static let maxHistoryJobs = 100_000

    /// A page of jobs matching `filter`: newest first on `jobs_model_order` (model given) or the
    /// primary key, or in request-id order on `jobs_request_id_key` for a request-id prefix.
    package func list(
        _ filter: JobListFilter, cursor: JobListCursor?, limit: Int, on database: some PostgresQueryable, logger: Logger
    ) async throws -> JobListPage {
        let statements = try Self.listStatements(filter, cursor: cursor, limit: limit)
        var rows: [JobListRow] = []
        for try await row in try await database.run(statements.page, logger: logger).decode(
            (Int64, UUID, String, String, Int32, Int32, Date, Date?, Date?, String?, String?, Double?).self)
        {
            rows.append(
                JobListRow(
                    id: row.0, requestID: row.1, model: row.2, status: try Self.status(row.3), priority: row.4, retries: row.5,
                    createdAt: row.6, claimedAt: row.7, doneAt: row.8, errorType: row.9, workerID: row.10, progress: row.11))
        }
        let limit = statements.limit
        if rows.count > limit {
            let last = rows[limit - 1]
            return JobListPage(
                rows: Array(rows.prefix(limit)), nextCursor: statements.byRequestID ? .afterRequestID(last.requestID) : .beforeID(last.id),
                scanned: nil)
        }
        // A short page read its whole slice (or reached the end): the next page starts after the
        // slice's last entry, read from the same index, when anything follows it.
        let edge = try await database.run(statements.edge, logger: logger).collect()
        var next: JobListCursor?
        if edge.count == 2 {
            next = statements.byRequestID ? .afterRequestID(try edge[0].decode(UUID.self)) : .beforeID(try edge[0].decode(Int64.self))
        }
        return JobListPage(rows: rows, nextCursor: next, scanned: edge.isEmpty ? nil : Self.maxListScan)
    }

    /// The two statements of a page, exactly as `list` runs them (tests read their plans).
    package struct JobListStatements: Sendable {
        /// The page: at most `limit + 1` matching rows of one slice of at most `maxListScan` index entries.
        package var page: PostgresQuery
        /// The slice's last entry and the one after it, read from the index alone: two rows mean more follow.
        package var edge: PostgresQuery
        package var byRequestID: Bool
        package var limit: Int
    }

    package static func listStatements(_ filter: JobListFilter, cursor: JobListCursor?, limit: Int) throws -> JobListStatements {
        let limit = min(max(limit, 1), maxListLimit)
        var bindings = PostgresBindings()
        func bind(_ value: some PostgresEncodable & Sendable) throws -> String {
            try bindings.append(value)
            return "$\(bindings.count)"
        }
        // The walk: one index, in the page's order, from the cursor on.
        let walk: String
        let key: String
        let byRequestID = filter.requestIDPrefix != nil
        var conditions: [String] = []
        if let prefix = filter.requestIDPrefix {
            let (low, high) = requestIDRange(prefix: prefix)
            var after: UUID?
            if case .afterRequestID(let id) = cursor { after = id }
            walk =
                "FROM jobs WHERE request_id \(after == nil ? ">=" : ">") \(try bind(after ?? low)) AND request_id <= \(try bind(high)) ORDER BY request_id"
            key = "request_id"
            if let model = filter.model { conditions.append("model = \(try bind(model))") }
        } else {
            var before = Int64.max
            if case .beforeID(let id) = cursor { before = id }
            let model = try filter.model.map { "model = \(try bind($0)) AND " } ?? ""
            walk = "FROM jobs WHERE \(model)id < \(try bind(before)) ORDER BY id DESC"
            key = "id"
        }
        let edge = PostgresQuery(unsafeSQL: "SELECT \(key) \(walk) OFFSET \(maxListScan - 1) LIMIT 2", binds: bindings)
        if let status = filter.status { conditions.append("status = \(try bind(status.rawValue))") }
        if let priority = filter.priority { conditions.append("priority = \(try bind(priority))") }
        if let after = filter.createdAfter { conditions.append("created_at >= \(try bind(after))") }
        if let before = filter.createdBefore { conditions.append("created_at < \(try bind(before))") }
        if let tenant = filter.tenant { conditions.append("tenant = \(try bind(tenant))") }
        // The outer LIMIT stops the slice's scan as soon as the page is full; constant LIMITs keep
        // the plan simple (a parameter is planned as unknown).
        let page = """
            SELECT id, request_id, model, status, priority, retries, created_at, claimed_at, done_at, error_type, worker_id,
                   CASE WHEN jsonb_typeof(info -> 'progress') = 'number' THEN (info ->> 'progress')::float8 END
            FROM (
                SELECT id, request_id, model, status, priority, retries, created_at, claimed_at, done_at, error_type, worker_id, info, tenant
                \(walk) LIMIT \(maxListScan)
            ) AS slice
            \(conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND "))
            ORDER BY \(byRequestID ? "request_id" : "id DESC")
            LIMIT \(limit + 1)
            """
        return JobListStatements(
            page: PostgresQuery(unsafeSQL: page, binds: bindings), edge: edge, byRequestID: byRequestID, limit: limit)
    }

    /// The smallest and largest request ids that start with `prefix` (hex digits).
    static func requestIDRange(prefix: String) -> (UUID, UUID) {
        func uuid(_ hex: String) -> UUID {
            let digits = Array(hex)
            let text =
                "\(String(digits[0..<8]))-\(String(digits[8..<12]))-\(String(digits[12..<16]))-\(String(digits[16..<20]))-\(String(digits[20..<32]))"
            return UUID(uuidString: text)!
        }
        let digits = String(prefix.prefix(32))
        return (
            uuid(digits + String(repeating: "0", count: 32 - digits.count)),
            uuid(digits + String(repeating: "f", count: 32 - digits.count))
        )
    }

    /// Jobs that ended done or failed in each of the last 60 minutes, per model: the newest
    /// `maxHistoryJobs` ends, read newest first on `jobs_done_at`.
    package func finishedPerMinute(on database: some PostgresQueryable, logger: Logger) async throws -> FinishedHistory {
        // Constant LIMITs: a parameter would be planned as unknown and could start the JIT.
        let rows = try await database.run(
            """
            WITH recent AS (
                SELECT model, status, done_at FROM jobs
                WHERE done_at > now() - interval '60 minutes'
                ORDER BY done_at DESC LIMIT \(unescaped: String(Self.maxHistoryJobs))
            ), total AS (SELECT count(*) AS ends FROM recent)
            SELECT now(), total.ends, minute.model, minute.status, minute.ago, minute.jobs
            FROM total LEFT JOIN (
                SELECT model, status, least(59, floor(extract(epoch FROM now() - done_at) / 60))::int AS ago, count(*)::int8 AS jobs
                FROM recent WHERE status IN ('done', 'failed')
                GROUP BY 1, 2, 3
            ) AS minute ON true
            """, logger: logger)
        var now = Date()
        var total = 0
        var minutes: [FinishedMinute] = []
        for try await (at, ends, model, status, ago, jobs) in rows.decode((Date, Int, String?, String?, Int32?, Int?).self) {
            now = at
            total = ends
            guard let model, let status, let ago, let jobs else { continue }
            minutes.append(FinishedMinute(model: model, status: try Self.status(status), minutesAgo: Int(ago), count: jobs))
        }
        return FinishedHistory(now: now, minutes: minutes, capped: total >= Self.maxHistoryJobs)
    }
}
