import Foundation
import PostgresNIO

/// The store's one clock: the database's `now()`, or the `now` a test passes so that leases,
/// deadlines and retention can be tested without sleeping.
extension PostgresQuery.StringInterpolation {
    /// `coalesce($n::timestamptz, now())`: the moment `now`, or the database's clock when it is nil.
    mutating func appendInterpolation(clock now: Date?) {
        appendInterpolation(unescaped: "coalesce(")
        appendInterpolation(now)
        appendInterpolation(unescaped: "::timestamptz, now())")
    }

    /// That clock less `seconds`: the cutoff of a retention period or an idle time.
    mutating func appendInterpolation(secondsAgo seconds: Double, clock now: Date?) {
        appendInterpolation(unescaped: "(")
        appendInterpolation(clock: now)
        appendInterpolation(unescaped: " - make_interval(secs => ")
        appendInterpolation(seconds)
        appendInterpolation(unescaped: "))")
    }
}
