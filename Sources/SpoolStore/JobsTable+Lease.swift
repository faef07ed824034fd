import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// What a worker write found when it did not apply.
package enum LeaseRefusal: Error, Sendable, Equatable {
    /// No job has that request id.
    case notFound
    /// The job has moved on from the writer's lease (it expired and was requeued, claimed again,
    /// or finished): the write changed nothing. Fencing.
    case leaseLost(status: JobStatus, attempt: Int32)
    /// The emit would take the job's `info` past ``JobsTable/maxInfoBytes``: the write changed nothing.
    case infoTooLarge
}

/// A heartbeat's answer: the lease's new end, and why the job should stop, if it should.
package struct HeartbeatOutcome: Sendable, Equatable {
    package var leaseExpiresAt: Date
    package var stopReason: StopReason?
    /// The job's stored log lines after this write, for the log cap.
    package var logs: StoredLogs
}

/// A job's stored log lines and their bytes, as its counters say: what the log cap is checked against.
package struct StoredLogs: Sendable, Equatable {
    package var jobID: Int64
    package var lines: Int64
    package var bytes: Int64
}

/// How a worker ends its attempt.
package enum AttemptEnd: Sendable, Equatable {
    case complete(outputs: [String: JSONValue])
    case fail(error: String, retryable: Bool)
    case release

    var event: JobEvent {
        switch self {
        case .complete: .complete
        case .fail(_, let retryable): .fail(retryable: retryable)
        case .release: .release
        }
    }
}

/// Where an ended attempt left the job.
package struct FinishOutcome: Sendable, Equatable {
    package var status: JobStatus
    package var retries: Int32
    /// True when the attempt had already ended with this lease token (a retried write): nothing changed.
    package var replayed: Bool
    package var model: String
    /// How long the attempt ran, by the database's clock.
    package var runSeconds: Double
    /// The job's stored log lines after this write; nil when the write was a replay.
    package var logs: StoredLogs?
}

/// A job's emits and log lines that arrive with a worker write.
package struct AttemptReport: Sendable, Equatable {
    package var infoPatch: [String: JSONValue]
    package var logs: [JobLogLine]

    package init(infoPatch: [String: JSONValue] = [:], logs: [JobLogLine] = []) {
        self.infoPatch = infoPatch
        self.logs = logs
    }
}

// The writes of the lease protocol. Each names the lease token it was given and the status it
// expects to leave, so a worker whose lease moved on can never change the job's next attempt.
extension JobsTable {
    /// Extends a running job's lease, merges `report.infoPatch` into its info and appends log lines.
    ///
    /// A job asked to stop keeps its lease end: heartbeats no longer extend it.
    package func heartbeat(
        requestID: UUID, leaseToken: UUID, leaseSeconds: Double?, report: AttemptReport,
        on database: some PostgresQueryable, logger: Logger
    ) async throws -> Result<HeartbeatOutcome, LeaseRefusal> {
        let logs = LogColumns(report.logs)
        let patch = JSONValue.object(report.infoPatch).jsonText
        // One statement: the lease, the emit and the log lines commit together or not at all.
        let rows = try await database.run(
            """
            WITH beat AS (
                UPDATE jobs
                SET lease_expires_at = CASE WHEN stop_reason IS NULL
                        THEN now() + make_interval(secs => coalesce(\(leaseSeconds)::float8, lease_seconds, 30))
                        ELSE lease_expires_at END,
                    info = info || \(patch)::jsonb,
                    log_lines = log_lines + \(logs.count), log_bytes = log_bytes + \(logs.bytes)
                WHERE request_id = \(requestID) AND status = 'running' AND lease_token = \(leaseToken)
                  AND octet_length((info || \(patch)::jsonb)::text) <= \(Self.maxInfoBytes)
                RETURNING id, attempt, lease_expires_at, stop_reason, log_lines, log_bytes
            ), logged AS (
                \(insertingLogs: logs, of: "beat")
            )
            SELECT lease_expires_at, stop_reason, id, log_lines, log_bytes FROM beat
            """, logger: logger)
        for try await (expiresAt, stopReason, id, lines, bytes) in rows.decode((Date, String?, Int64, Int32, Int64).self) {
            return .success(
                HeartbeatOutcome(
                    leaseExpiresAt: expiresAt, stopReason: stopReason.flatMap(StopReason.init(rawValue:)),
                    logs: StoredLogs(jobID: id, lines: Int64(lines), bytes: bytes)))
        }
        return .failure(try await refusal(requestID: requestID, leaseToken: leaseToken, on: database, logger: logger))
    }

    /// The most a job's `info` holds, as JSON text: an emit past it is refused (a heartbeat's with
    /// 413), and a last emit or a retry-history entry past it is dropped, so a job's row stays small.
    package static let maxInfoBytes = 1 << 20

    /// Ends the attempt that holds `leaseToken`: complete, fail or release, as `JobStateMachine` decides.
    ///
    /// A retryable fail or a release returns the job to pending (waking waiting workers); a retry
    /// that reaches `retryLimit` fails it. The same write repeated with the same token after it
    /// succeeded is answered with the job's state and changes nothing.
    package func finish(
        requestID: UUID, leaseToken: UUID, end: AttemptEnd, report: AttemptReport, retryLimit: Int,
        on client: PostgresClient, logger: Logger
    ) async throws -> Result<FinishOutcome, LeaseRefusal> {
        try await client.transaction(logger: logger) { connection in
            let rows = try await connection.run(
                """
                SELECT id, status, stop_reason, retries, lease_token, attempt, model,
                       coalesce(extract(epoch FROM now() - claimed_at)::float8, 0)
                FROM jobs WHERE request_id = \(requestID) FOR UPDATE
                """, logger: logger)
            guard let row = try await rows.collect().first?.decode((Int64, String, String?, Int32, UUID?, Int32, String, Double).self)
            else {
                return .failure(.notFound)
            }
            let (id, statusText, stopText, retries, currentToken, attempt, model, runSeconds) = row
            let status = try Self.status(statusText)
            guard currentToken == leaseToken else { return .failure(.leaseLost(status: status, attempt: attempt)) }
            guard status == .running else {
                return .success(FinishOutcome(status: status, retries: retries, replayed: true, model: model, runSeconds: 0))
            }
            let stopReason = stopText.flatMap(StopReason.init(rawValue:))
            guard
                let transition = JobStateMachine.next(
                    from: .running, on: end.event, stopReason: stopReason, retries: Int(retries), retryLimit: retryLimit)
            else {
                throw SpoolStoreError(description: "No transition from running on \(end.event).")
            }
            var outputs: String?
            var error: String?
            var errorType: String?
            var reason = "released"
            switch end {
            case .complete(let values): outputs = JSONValue.object(values).jsonText
            case .fail(let message, _):
                error = stopReason == .maxRunTime ? "Stopped at the maximum run time: \(message)" : message
                errorType = stopReason == .maxRunTime ? ErrorType.runnerTimeout : ErrorType.runnerError
                reason = "failed"
            case .release:
                if stopReason == .maxRunTime {
                    error = Self.maxRunTimeError
                    errorType = ErrorType.runnerTimeout
                }
            }
            let logs = try await applyEnd(
                jobID: id, leaseToken: leaseToken, transition: transition, outputs: outputs, error: error, errorType: errorType,
                historyReason: transition.status == .done ? nil : reason, report: report, on: connection, logger: logger)
            return .success(
                FinishOutcome(
                    status: transition.status, retries: retries + (transition.countsRetry ? 1 : 0), replayed: false, model: model,
                    runSeconds: runSeconds, logs: logs))
        }
    }

    static let maxRunTimeError = "The job ran past the broker's maximum run time and was stopped."

    /// The codes of `error_type`, named as fal's clients know them.
    package enum ErrorType {
        /// The worker failed the job.
        package static let runnerError = "runner_error"
        /// Its lease expired on every attempt: the workers died or lost the broker.
        package static let runnerDisconnected = "runner_disconnected"
        /// It ran past the maximum run time.
        package static let runnerTimeout = "runner_timeout"
        /// It did not start before its start deadline.
        package static let requestTimeout = "request_timeout"
    }

    /// Writes an attempt's end; shared by worker writes and the lease-expiry requeue.
    ///
    /// `historyReason`, when set, appends an entry to `info.retry_history`: the record of attempts
    /// that ended without completing, kept across retries.
    @discardableResult
    func applyEnd(
        jobID: Int64, leaseToken: UUID, transition: JobTransition, outputs: String?, error: String?, errorType: String?,
        historyReason: String?, report: AttemptReport, on connection: PostgresConnection, logger: Logger
    ) async throws -> StoredLogs? {
        let logs = LogColumns(report.logs)
        let backToPending = transition.status == .pending
        let patch = JSONValue.object(report.infoPatch).jsonText
        let rows = try await connection.run(
            """
            WITH merged AS (
                -- The info the attempt leaves, kept only while it fits the cap (else the old info stays).
                SELECT id, CASE WHEN \(historyReason)::text IS NULL
                    THEN info || \(patch)::jsonb
                    ELSE info || \(patch)::jsonb || jsonb_build_object('retry_history',
                        coalesce(info -> 'retry_history', '[]'::jsonb) || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                            'attempt', attempt, 'reason', \(historyReason)::text, 'error', \(error)::text, 'worker_id', worker_id,
                            'at', now()))))
                    END AS info
                FROM jobs WHERE id = \(jobID)
            ), ended AS (
                UPDATE jobs
                SET status = \(transition.status.rawValue),
                    retries = retries + \(transition.countsRetry ? 1 : 0),
                    outputs = coalesce(\(outputs)::jsonb, outputs),
                    -- Only a failed job shows an error; earlier attempts' errors live in the retry history.
                    error = CASE WHEN \(transition.status == .failed) THEN \(error)::text END,
                    error_type = CASE WHEN \(transition.status == .failed) THEN \(errorType)::text END,
                    done_at = CASE WHEN \(transition.status.isTerminal) THEN now() END,
                    -- A finished job keeps its last token (a retried complete is recognised); a requeued one has none.
                    lease_token = CASE WHEN \(backToPending) THEN NULL ELSE lease_token END,
                    lease_expires_at = NULL,
                    stop_reason = CASE WHEN \(backToPending) THEN NULL ELSE stop_reason END,
                    info = CASE WHEN octet_length(merged.info::text) <= \(Self.maxInfoBytes) THEN merged.info ELSE jobs.info END,
                    log_lines = log_lines + \(logs.count), log_bytes = log_bytes + \(logs.bytes)
                FROM merged
                WHERE jobs.id = merged.id AND jobs.status = 'running' AND jobs.lease_token = \(leaseToken)
                RETURNING jobs.id, jobs.attempt, jobs.model, jobs.log_lines, jobs.log_bytes
            ), logged AS (
                \(insertingLogs: logs, of: "ended")
            )
            SELECT ended.id, ended.log_lines, ended.log_bytes FROM ended
            -- A job back in the queue wakes the leases waiting for its model.
            LEFT JOIN LATERAL (SELECT pg_notify(\(Self.pendingChannel), ended.model) WHERE \(backToPending)) AS woken ON true
            """, logger: logger)
        for try await (id, lines, bytes) in rows.decode((Int64, Int32, Int64).self) {
            return StoredLogs(jobID: id, lines: Int64(lines), bytes: bytes)
        }
        return nil
    }

    /// Why a worker write matched no row: no such job, a lease that moved on, or (the lease holds)
    /// an emit too large.
    func refusal(
        requestID: UUID, leaseToken: UUID, on database: some PostgresQueryable, logger: Logger
    ) async throws
        -> LeaseRefusal
    {
        try await checkLease(requestID: requestID, leaseToken: leaseToken, on: database, logger: logger) ?? .infoTooLarge
    }

    /// Whether `leaseToken` is the lease of the job's running attempt: nil when it is, else why not
    /// (what a worker's file upload checks at its start, and under `FOR SHARE` at its end).
    package func checkLease(
        requestID: UUID, leaseToken: UUID, locking: Bool = false, on database: some PostgresQueryable, logger: Logger
    ) async throws -> LeaseRefusal? {
        let rows = try await database.run(
            """
            SELECT status, attempt, lease_token = \(leaseToken) FROM jobs WHERE request_id = \(requestID)
            \(unescaped: locking ? "FOR SHARE" : "")
            """, logger: logger)
        for try await (status, attempt, holds) in rows.decode((String, Int32, Bool?).self) {
            let status = try Self.status(status)
            return status == .running && holds == true ? nil : .leaseLost(status: status, attempt: attempt)
        }
        return .notFound
    }
}

/// One completion of a grouped complete.
package struct Completion: Sendable, Equatable {
    package var requestID: UUID
    package var leaseToken: UUID
    package var outputs: [String: JSONValue]
    package var report: AttemptReport

    package init(requestID: UUID, leaseToken: UUID, outputs: [String: JSONValue], report: AttemptReport = AttemptReport()) {
        self.requestID = requestID
        self.leaseToken = leaseToken
        self.outputs = outputs
        self.report = report
    }
}

/// A job a grouped complete finished.
package struct Completed: Sendable, Equatable {
    package var requestID: UUID
    package var model: String
    package var retries: Int32
    package var runSeconds: Double
    /// The job's stored log lines after this write.
    package var logs: StoredLogs
}

extension JobsTable {
    /// Completes many running jobs in one statement, each fenced by its lease token, with their
    /// last emits and log lines. Returns the jobs it completed; any other (a lease that moved on,
    /// a retried complete, an unknown id) is left unchanged for `finish` to settle and explain.
    package func completeMany(
        _ completions: [Completion], on database: some PostgresQueryable, logger: Logger
    ) async throws
        -> [Completed]
    {
        guard !completions.isEmpty else { return [] }
        var logIDs: [UUID] = []
        var logs = LogColumns([])
        var lineCounts: [Int32] = []
        var byteCounts: [Int64] = []
        for completion in completions {
            let columns = LogColumns(completion.report.logs)
            lineCounts.append(columns.count)
            byteCounts.append(columns.bytes)
            logIDs += Array(repeating: completion.requestID, count: columns.levels.count)
            logs.levels += columns.levels
            logs.sources += columns.sources
            logs.messages += columns.messages
            logs.times += columns.times
        }
        let rows = try await database.run(
            CompleteManyStatement(
                requestIDs: completions.map(\.requestID), leaseTokens: completions.map(\.leaseToken),
                outputs: completions.map { JSONValue.object($0.outputs).jsonText },
                patches: completions.map { JSONValue.object($0.report.infoPatch).jsonText }, lineCounts: lineCounts,
                byteCounts: byteCounts, logIDs: logIDs, logs: logs),
            logger: logger)
        var completed: [Completed] = []
        for try await (requestID, model, retries, run, id, lines, bytes) in rows {
            completed.append(
                Completed(
                    requestID: requestID, model: model, retries: retries, runSeconds: run,
                    logs: StoredLogs(jobID: id, lines: Int64(lines), bytes: bytes)))
        }
        return completed
    }
}

/// Many completions in one statement, prepared once per connection; each fenced by its lease token.
struct CompleteManyStatement: PostgresPreparedStatement {
    static let name = "spool_complete_many_v3"
    static let sql = """
        WITH input AS (
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $10::int4[], $11::int8[])
                AS item(request_id, lease_token, outputs, patch, log_lines, log_bytes)
        ), done AS (
            UPDATE jobs SET status = \(JobStateMachine.edge(.complete).to.sql), outputs = item.outputs::jsonb,
                            -- A last emit that would take info past its cap is dropped; the outputs are kept.
                            info = CASE WHEN octet_length((jobs.info || item.patch::jsonb)::text) <= \(JobsTable.maxInfoBytes)
                                        THEN jobs.info || item.patch::jsonb ELSE jobs.info END,
                            done_at = now(), lease_expires_at = NULL, error = NULL, error_type = NULL,
                            log_lines = jobs.log_lines + item.log_lines, log_bytes = jobs.log_bytes + item.log_bytes
            FROM input AS item
            WHERE jobs.request_id = item.request_id AND jobs.status = \(JobStateMachine.edge(.complete).from.sql)
              AND jobs.lease_token = item.lease_token
            RETURNING jobs.id, jobs.attempt, jobs.request_id, jobs.model, jobs.retries,
                      extract(epoch FROM now() - jobs.claimed_at)::float8 AS run, jobs.log_lines, jobs.log_bytes
        ), logged AS (
            \(JobLogsTable.insertSQL(attempts: "done"))
            FROM unnest($5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[]) AS line(request_id, level, source, message, logged_at)
            JOIN done ON done.request_id = line.request_id
        )
        SELECT request_id, model, retries, run, id, log_lines, log_bytes FROM done
        """
    typealias Row = (UUID, String, Int32, Double, Int64, Int32, Int64)

    var requestIDs: [UUID]
    var leaseTokens: [UUID]
    var outputs: [String]
    var patches: [String]
    var lineCounts: [Int32]
    var byteCounts: [Int64]
    var logIDs: [UUID]
    var logs: LogColumns

    func makeBindings() throws -> PostgresBindings {
        .values(requestIDs, leaseTokens, outputs, patches, logIDs, logs.levels, logs.sources, logs.messages, logs.times, lineCounts, byteCounts)
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}

extension JobsTable {
    /// Drops a job's oldest log lines until it keeps at most `keepLines` lines and `keepBytes`
    /// bytes, and sets its counters to match; returns how many lines it dropped. Called when a
    /// write takes a job over its cap, with a target below the cap so trims are rare.
    @discardableResult
    package func trimLogs(
        jobID: Int64, keepLines: Int, keepBytes: Int64, on database: some PostgresQueryable, logger: Logger
    )
        async throws -> Int
    {
        let rows = try await database.run(
            """
            WITH ranked AS (
                -- Counted from the newest line back: what the newest lines add up to.
                SELECT id, count(*) OVER newest_first AS lines_from_newest,
                       sum(octet_length(message)) OVER newest_first AS bytes_from_newest
                FROM job_logs WHERE job_id = \(jobID)
                WINDOW newest_first AS (ORDER BY id DESC)
            ), dropped AS (
                DELETE FROM job_logs
                WHERE id = ANY (ARRAY(SELECT id FROM ranked WHERE lines_from_newest > \(keepLines) OR bytes_from_newest > \(keepBytes)))
                RETURNING octet_length(message) AS bytes
            ), counted AS (
                UPDATE jobs SET log_lines = greatest(0, log_lines - (SELECT count(*) FROM dropped)),
                                log_bytes = greatest(0, log_bytes - coalesce((SELECT sum(bytes) FROM dropped), 0))
                WHERE id = \(jobID)
            )
            SELECT count(*) FROM dropped
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }
}

extension JobsTable {
    /// Puts claimed jobs whose lease answer never reached their worker (it hung up first) back in
    /// the queue as if never claimed (`JobEvent.undelivered`): the attempt is given back and no
    /// retry is counted. Fenced by each lease token; a job asked to stop meanwhile is left to its
    /// lease, to end as the stop says. Returns how many went back.
    @discardableResult
    package func handBack(
        _ leases: [(requestID: UUID, leaseToken: UUID)], on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        guard !leases.isEmpty, let transition = JobStateMachine.next(from: .running, on: .undelivered) else { return 0 }
        let rows = try await database.run(
            """
            WITH returned AS (
                UPDATE jobs SET status = \(transition.status.rawValue), attempt = attempt - 1, lease_token = NULL,
                                lease_expires_at = NULL,
                                -- A first attempt that never started leaves no trace of its claim.
                                claimed_at = CASE WHEN attempt = 1 THEN NULL ELSE claimed_at END,
                                worker_id = CASE WHEN attempt = 1 THEN NULL ELSE worker_id END
                FROM unnest(\(leases.map(\.requestID))::uuid[], \(leases.map(\.leaseToken))::uuid[]) AS lease(request_id, token)
                WHERE jobs.request_id = lease.request_id AND jobs.lease_token = lease.token AND jobs.status = 'running'
                  AND jobs.stop_reason IS NULL
                RETURNING jobs.model
            )
            SELECT count(*) FROM returned, LATERAL (SELECT pg_notify(\(Self.pendingChannel), returned.model)) AS woken
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }
}
