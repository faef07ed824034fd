import PostgresNIO
import SpoolCore

/// Statuses go into SQL as literals, not parameters: the partial indexes (`WHERE status = 'pending'`)
/// match only a literal, and the state machines in SpoolCore decide which literal.
extension JobStatus {
    var sql: String { "'\(rawValue)'" }
}

extension BatchStatus {
    var sql: String { "'\(rawValue)'" }
}

extension Sequence where Element == BatchStatus {
    /// `'IN_PROGRESS', 'CANCELLING'`: the inside of a `status IN (…)`.
    var sql: String { map(\.sql).joined(separator: ", ") }
}

extension Sequence where Element == JobStatus {
    /// `'done', 'failed'`: the inside of a `status IN (…)`.
    var sql: String { map(\.sql).joined(separator: ", ") }
}

extension PostgresQuery.StringInterpolation {
    mutating func appendInterpolation(_ status: JobStatus) { appendInterpolation(unescaped: status.sql) }
    mutating func appendInterpolation(_ status: BatchStatus) { appendInterpolation(unescaped: status.sql) }
    mutating func appendInterpolation(_ statuses: [BatchStatus]) { appendInterpolation(unescaped: statuses.sql) }
    mutating func appendInterpolation(_ statuses: [JobStatus]) { appendInterpolation(unescaped: statuses.sql) }
}
