import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// A job whose lease ran out, and where the requeue sent it.
package struct ExpiredLease: Sendable, Equatable {
    package var requestID: UUID
    package var model: String
    package var status: JobStatus
    package var retries: Int32
}

// Maintenance every broker replica runs: it is safe to run on all of them at once, since each
// statement locks the rows it changes and skips rows another replica holds.
extension JobsTable {
    /// Returns running jobs whose lease expired to pending (retries + 1), or fails them at the retry
    /// limit; jobs asked to stop end as the stop says. Handles at most `batchSize` jobs per call.
    ///
    /// `now`, here and in the other sweeps, stands in for the database's clock when deciding what is
    /// due (nil: the database's `now()`), so tests move time instead of sleeping.
    package func requeueExpiredLeases(
        retryLimit: Int, batchSize: Int = 500, now: Date? = nil, on client: PostgresClient, logger: Logger
    ) async throws -> [ExpiredLease] {
        do {
            return try await requeueExpiredLeases(
                retryLimit: retryLimit, batchSize: batchSize, now: now, isolatingEach: false, on: client, logger: logger)
        } catch let failure where !(failure is DatabaseConnectionLost) {
            // One job's update failed and took the batch with it: again, each job under its own
            // savepoint, so that one cannot leave the others running forever, pass after pass.
            return try await requeueExpiredLeases(
                retryLimit: retryLimit, batchSize: batchSize, now: now, isolatingEach: true, on: client, logger: logger)
        }
    }

    private func requeueExpiredLeases(
        retryLimit: Int, batchSize: Int, now: Date?, isolatingEach: Bool, on client: PostgresClient, logger: Logger
    ) async throws -> [ExpiredLease] {
        try await client.transaction(logger: logger) { connection in
            // SKIP LOCKED: a replica running the same sweep, or a worker finishing one of these jobs
            // right now, holds its rows; they are someone else's to settle.
            let rows = try await connection.run(
                """
                SELECT id, request_id, model, retries, stop_reason, lease_token
                FROM jobs
                WHERE status = \(JobStatus.running) AND lease_expires_at <= \(clock: now)
                ORDER BY lease_expires_at
                LIMIT \(batchSize)
                FOR UPDATE SKIP LOCKED
                """, logger: logger
            ).collect()
            var expired: [ExpiredLease] = []
            // Rows are read in full first: the connection runs one statement at a time.
            for row in rows {
                let (id, requestID, model, retries, stopText, token) = try row.decode((Int64, UUID, String, Int32, String?, UUID).self)
                let stopReason = stopText.flatMap(StopReason.init(rawValue:))
                guard
                    let transition = JobStateMachine.next(
                        from: .running, on: .leaseExpired, stopReason: stopReason, retries: Int(retries), retryLimit: retryLimit)
                else { continue }
                let newRetries = retries + (transition.countsRetry ? 1 : 0)
                let error: String? =
                    switch stopReason {
                    case .maxRunTime: Self.maxRunTimeError
                    case .canceled: nil
                    case nil:
                        transition.status == .failed
                            ? "The job's lease expired \(newRetries) times (retry limit \(retryLimit)): each time its worker stopped heartbeating (it crashed, hung or lost the broker)."
                            : "The lease expired: the worker stopped heartbeating."
                    }
                let errorType = stopReason == .maxRunTime ? ErrorType.runnerTimeout : ErrorType.runnerDisconnected
                guard isolatingEach else {
                    try await applyEnd(
                        jobID: id, leaseToken: token, transition: transition, outputs: nil, error: error, errorType: errorType,
                        historyReason: "lease_expired", report: AttemptReport(), on: connection, logger: logger)
                    expired.append(ExpiredLease(requestID: requestID, model: model, status: transition.status, retries: newRetries))
                    continue
                }
                try await connection.run("SAVEPOINT requeue_one", logger: logger)
                do {
                    try await applyEnd(
                        jobID: id, leaseToken: token, transition: transition, outputs: nil, error: error, errorType: errorType,
                        historyReason: "lease_expired", report: AttemptReport(), on: connection, logger: logger)
                    try await connection.run("RELEASE SAVEPOINT requeue_one", logger: logger)
                    expired.append(ExpiredLease(requestID: requestID, model: model, status: transition.status, retries: newRetries))
                } catch let failure where !(failure is DatabaseConnectionLost) {
                    try await connection.run("ROLLBACK TO SAVEPOINT requeue_one", logger: logger)
                    logger.error(
                        "could not requeue a job whose lease expired; the others go on",
                        metadata: ["request_id": "\(requestID)", "error": "\(String(reflecting: failure))"])
                }
            }
            return expired
        }
    }

    /// Asks running jobs past their run deadline to stop: their next heartbeat says so, their lease
    /// is cut to `graceSeconds` and no longer extended, and when it ends they fail. Returns how many.
    package func stopJobsPastRunDeadline(
        graceSeconds: Double, now: Date? = nil, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        // Running jobs are few (one per busy GPU slot); their partial index bounds this scan.
        let rows = try await database.run(
            """
            WITH stopped AS (
                UPDATE jobs
                SET stop_reason = \(StopReason.maxRunTime.rawValue),
                    lease_expires_at = least(lease_expires_at, now() + make_interval(secs => \(graceSeconds)))
                WHERE status = \(JobStateMachine.edge(.askToStop).from) AND stop_reason IS NULL AND run_deadline_at <= \(clock: now)
                RETURNING 1
            )
            SELECT count(*) FROM stopped
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }

    /// Fails pending jobs whose start deadline passed (fal's `X-Fal-Request-Timeout`); returns how many per model.
    package func failJobsPastStartDeadline(
        now: Date? = nil, on database: some PostgresQueryable, logger: Logger
    ) async throws -> [String: Int] {
        let timeout = JobStateMachine.edge(.startTimeout)
        let rows = try await database.run(
            """
            WITH late AS (
                SELECT id FROM jobs
                WHERE status = \(timeout.from) AND start_deadline_at <= \(clock: now)
                LIMIT 1000
                FOR UPDATE SKIP LOCKED
            ), failed AS (
                UPDATE jobs SET status = \(timeout.to), done_at = now(), error_type = \(ErrorType.requestTimeout),
                                error = 'The job did not start before its start timeout ('
                                        || round(extract(epoch FROM start_deadline_at - created_at)::numeric, 1) || ' s).'
                WHERE id = ANY (ARRAY(SELECT id FROM late)) AND status = \(timeout.from)
                RETURNING model
            )
            SELECT model, count(*) FROM failed GROUP BY model
            """, logger: logger)
        var counts: [String: Int] = [:]
        for try await (model, count) in rows.decode((String, Int).self) { counts[model] = count }
        return counts
    }

    /// Sends a failed job back to the queue for a new attempt, as an operator asked: its error stays
    /// in `info.retry_history` (where its failure put it) beside an entry saying who requeued it, its webhook delivery is forgotten so its next
    /// end is delivered again, and the audit trail records `actor`, all in one statement. A batch's
    /// job is not requeued (its batch's files are written once).
    package func requeueFailed(
        model: String, requestID: UUID, tenant: String?, actor: String, on database: some PostgresQueryable, logger: Logger
    ) async throws -> RequeueOutcome {
        guard let transition = JobStateMachine.next(from: .failed, on: .requeue) else { return .notFound }
        let rows = try await database.run(
            """
            WITH target AS (
                SELECT id, status, batch_id FROM jobs
                WHERE request_id = \(requestID) AND model = \(model) AND (\(tenant)::text IS NULL OR tenant = \(tenant))
                FOR UPDATE
            ), requeued AS (
                UPDATE jobs SET status = \(transition.status.rawValue), error = NULL, error_type = NULL, done_at = NULL,
                    claimed_at = NULL, worker_id = NULL, stop_reason = NULL, run_deadline_at = NULL, start_deadline_at = NULL,
                    info = CASE WHEN octet_length(info::text) <= \(Self.maxInfoBytes - 4096)
                        THEN info || jsonb_build_object('retry_history', coalesce(info -> 'retry_history', '[]'::jsonb)
                            || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                                'attempt', attempt, 'reason', 'requeued', 'at', now(), 'by', \(actor)::text))))
                        ELSE info END
                FROM target
                WHERE jobs.id = target.id AND jobs.status = \(JobStatus.failed.rawValue) AND target.batch_id IS NULL
                RETURNING jobs.id, jobs.model
            ), forgotten AS (
                DELETE FROM webhook_deliveries WHERE job_id IN (SELECT id FROM requeued)
            ), audited AS (
                INSERT INTO audit_events (actor, action, target, details)
                SELECT \(actor), 'job.requeued', \(requestID.uuidString.lowercased()), jsonb_build_object('model', model) FROM requeued
            )
            SELECT 'requeued', false FROM requeued
            -- A job back in the queue wakes the leases waiting for its model.
            LEFT JOIN LATERAL (SELECT pg_notify(\(Self.pendingChannel), requeued.model)) AS woken ON true
            UNION ALL
            SELECT status, batch_id IS NOT NULL FROM target WHERE NOT EXISTS (SELECT 1 FROM requeued)
            """, logger: logger)
        for try await (outcome, inBatch) in rows.decode((String, Bool).self) {
            if outcome == "requeued" { return .requeued }
            if inBatch { return .inBatch }
            return .unchanged(try Self.status(outcome))
        }
        return .notFound
    }
}

/// What an operator's requeue found.
package enum RequeueOutcome: Sendable, Equatable {
    case requeued
    /// The job is not failed; it keeps this status.
    case unchanged(JobStatus)
    /// The job belongs to a batch, which writes its files once.
    case inBatch
    case notFound
}
