import Foundation
import Logging
import PostgresNIO

/// A webhook delivery taken by a sender for one attempt.
package struct DueDelivery: Sendable, Equatable {
    package var id: Int64
    package var webhookID: String
    package var url: String
    package var body: String
    /// This attempt's number (1 for the first); the write of its result names it (fencing).
    package var attempt: Int32
    package var createdAt: Date
}

/// A delivery as the status API shows it.
package struct DeliveryRecord: Sendable, Equatable {
    package var webhookID: String
    package var url: String
    package var state: String
    package var attempts: Int32
    package var lastStatusCode: Int32?
    package var lastError: String?
    package var lastAttemptAt: Date?
    package var nextAttemptAt: Date?
}

/// How an attempt went.
package enum DeliveryResult: Sendable, Equatable {
    /// 2xx: done.
    case delivered(statusCode: Int)
    /// 410 Gone: the receiver wants no more; no retries.
    case gone
    /// Anything else; try again after the schedule's next delay, or give up when there is none
    /// (or it would fall after the retry period, which `record` decides by the database's clock).
    case failed(statusCode: Int?, error: String, retryAfterSeconds: Double?)
}

/// The `webhook_deliveries` table: the outbox that the `jobs_enqueue_webhook` trigger fills.
package struct WebhookDeliveriesTable: Sendable {
    package init() {}

    /// The channel that announces new deliveries, so a sender starts the first attempt at once.
    package static let channel = "spool_webhook"

    /// Takes up to `limit` due deliveries for one attempt each. Each is leased for `leaseSeconds`:
    /// if this broker dies mid-attempt, another one retries it when the lease ends.
    package func takeDue(
        limit: Int, leaseSeconds: Double, now: Date? = nil, on database: some PostgresQueryable, logger: Logger
    ) async throws
        -> [DueDelivery]
    {
        let rows = try await database.run(
            """
            WITH due AS (
                SELECT id FROM webhook_deliveries
                WHERE state = 'pending' AND next_attempt_at <= \(clock: now)
                ORDER BY next_attempt_at
                LIMIT \(limit)
                FOR UPDATE SKIP LOCKED
            )
            UPDATE webhook_deliveries SET attempts = attempts + 1, last_attempt_at = now(),
                                          next_attempt_at = now() + make_interval(secs => \(leaseSeconds))
            WHERE id = ANY (ARRAY(SELECT id FROM due))
            RETURNING id, webhook_id, url, body, attempts, created_at
            """, logger: logger)
        var due: [DueDelivery] = []
        for try await (id, webhookID, url, body, attempt, createdAt) in rows.decode((Int64, String, String, String, Int32, Date).self) {
            due.append(DueDelivery(id: id, webhookID: webhookID, url: url, body: body, attempt: attempt, createdAt: createdAt))
        }
        return due
    }

    /// Records an attempt's result, if the delivery is still this attempt's (its lease did not end
    /// and another sender take it); returns the delivery's new state, or nil when it was not. A
    /// failed attempt is retried only while the retry falls within `retrySeconds` of the delivery's
    /// creation, both by the database's clock.
    @discardableResult
    package func record(
        _ result: DeliveryResult, of delivery: DueDelivery, retrySeconds: Double, on database: some PostgresQueryable, logger: Logger
    ) async throws -> String? {
        let state: String
        var statusCode: Int?
        var error: String?
        var retryAfter: Double?
        switch result {
        case .delivered(let code):
            state = "delivered"
            statusCode = code
        case .gone:
            state = "gone"
            statusCode = 410
            error = "The receiver answered 410 Gone: no more attempts."
        case .failed(let code, let message, let retryAfterSeconds):
            state = retryAfterSeconds == nil ? "failed" : "pending"
            statusCode = code
            error = message
            retryAfter = retryAfterSeconds
        }
        let rows = try await database.run(
            """
            WITH decided AS (
                SELECT CASE WHEN \(state)::text = 'pending'
                             AND now() + make_interval(secs => \(retryAfter)::float8) > created_at + make_interval(secs => \(retrySeconds)::float8)
                            THEN 'failed' ELSE \(state)::text END AS state
                FROM webhook_deliveries WHERE id = \(delivery.id)
            )
            UPDATE webhook_deliveries
            SET state = decided.state, last_status_code = \(statusCode)::integer, last_error = \(error)::text,
                delivered_at = CASE WHEN decided.state = 'delivered' THEN now() END,
                next_attempt_at = CASE WHEN decided.state = 'pending' THEN now() + make_interval(secs => \(retryAfter)::float8)
                                       ELSE next_attempt_at END
            FROM decided
            WHERE id = \(delivery.id) AND attempts = \(delivery.attempt) AND webhook_deliveries.state = 'pending'
            RETURNING webhook_deliveries.state
            """, logger: logger)
        return try await rows.collect().first?.decode(String.self)
    }

    /// The delivery of a job, if it has ended and named a URL.
    package func find(jobID: Int64, on database: some PostgresQueryable, logger: Logger) async throws -> DeliveryRecord? {
        let rows = try await database.run(
            """
            SELECT webhook_id, url, state, attempts, last_status_code, last_error, last_attempt_at,
                   CASE WHEN state = 'pending' THEN next_attempt_at END
            FROM webhook_deliveries WHERE job_id = \(jobID)
            """, logger: logger)
        for try await row in rows.decode((String, String, String, Int32, Int32?, String?, Date?, Date?).self) {
            return DeliveryRecord(
                webhookID: row.0, url: row.1, state: row.2, attempts: row.3, lastStatusCode: row.4, lastError: row.5,
                lastAttemptAt: row.6, nextAttemptAt: row.7)
        }
        return nil
    }

    /// Deliveries waiting for their next attempt (for metrics).
    package func pendingCount(on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        try await database.run("SELECT count(*) FROM webhook_deliveries WHERE state = 'pending'", logger: logger)
            .collect().first?.decode(Int.self) ?? 0
    }
}
