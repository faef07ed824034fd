import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// A batch as stored.
package struct BatchRecord: Sendable, Equatable {
    package var id: UUID
    package var status: BatchStatus
    package var endpoint: String
    package var inputFileID: String
    package var outputFileID: String?
    package var errorFileID: String?
    package var modelID: String?
    package var priority: Int32
    package var completionWindow: String
    package var createdAt: Date
    package var jobDeadline: Date
    package var completedAt: Date?
    package var error: String?
    package var fileSizeBytes: Int64
    package var totalLines: Int64?
    package var finishedLines: Int64
    package var failedLines: Int64
    package var owner: String?
    /// The tenant whose batch it is: its lines and output files are that tenant's too.
    package var tenant: String
}

/// What a cancel found.
package enum BatchCancelOutcome: Sendable, Equatable {
    /// The batch now cancels (or has canceled) its lines; this is its record.
    case canceling(BatchRecord)
    /// The batch had already ended this way; nothing changed.
    case alreadyEnded(BatchStatus)
    case notFound
}

/// A batch the batch pass found with work to do.
package struct ActiveBatch: Sendable {
    package var id: UUID
    package var totalLines: Int64
    package var finishedLines: Int64
    /// Lines not yet done, failed or canceled.
    package var unfinished: Int
    /// Set when the batch ends early: its unfinished lines are to be canceled.
    package var ending: BatchEnding?
}

/// The `batches` table, and the batch's view of its jobs.
package struct BatchesTable: TenantRecordsTable {
    package static let tableName = "batches"
    package typealias ID = UUID
    package init() {}

    package func create(
        id: UUID, endpoint: String, inputFileID: String, modelID: String?, priority: Int32, completionWindow: String,
        windowSeconds: Double, fileSizeBytes: Int64, owner: String, tenant: String, on database: some PostgresQueryable, logger: Logger
    ) async throws -> BatchRecord {
        let rows = try await database.run(
            """
            INSERT INTO batches (id, endpoint, input_file_id, model_id, priority, completion_window, job_deadline, file_size_bytes, owner,
                                 tenant)
            VALUES (\(id), \(endpoint), \(inputFileID), \(modelID), \(priority), \(completionWindow),
                    now() + make_interval(secs => \(windowSeconds)), \(fileSizeBytes), \(owner), \(tenant))
            RETURNING \(unescaped: Self.columns)
            """, logger: logger)
        for try await row in rows { return try Self.record(row) }
        throw SpoolStoreError(description: "INSERT INTO batches returned no row.")
    }

    /// Cancels a batch: one still validating is canceled outright; one in progress cancels its
    /// pending lines, asks its running ones to stop, and shows CANCELLING until they have ended.
    package func cancel(
        id: UUID, tenant: String?, graceSeconds: Double, on client: PostgresClient, logger: Logger
    ) async throws
        -> BatchCancelOutcome
    {
        try await client.transaction(logger: logger) { connection in
            // Waits for a validation in progress: it holds the row until its lines are enqueued.
            let rows = try await connection.run(
                "SELECT status FROM batches WHERE id = \(id) AND (\(tenant)::text IS NULL OR tenant = \(tenant)) FOR UPDATE", logger: logger
            ).collect()
            guard let text = try rows.first?.decode(String.self) else { return .notFound }
            let status = try Self.status(text)
            guard let next = BatchStateMachine.next(from: status, on: .cancel) else { return .alreadyEnded(status) }
            if next != status {
                // A batch canceled before its lines were enqueued has none to wait for; one in progress waits for its running lines.
                try await connection.run(
                    """
                    UPDATE batches SET status = \(next), ending = \(BatchEnding.cancel.rawValue),
                                       completed_at = CASE WHEN \(next.isTerminal) THEN now() END,
                                       total_lines = CASE WHEN \(next.isTerminal) THEN 0 ELSE total_lines END
                    WHERE id = \(id) AND status = \(status)
                    """, logger: logger)
            }
            if next == .cancelling, status != .cancelling {
                try await stopLines(
                    batchID: id, reason: BatchEnding.cancel.lineStopReason, graceSeconds: graceSeconds, on: connection, logger: logger)
            }
            guard let record = try await find(id: id, tenant: tenant, on: connection, logger: logger) else { return .notFound }
            return .canceling(record)
        }
    }

    /// Cancels the batch's pending lines and asks its running ones to stop (their leases cut to
    /// `graceSeconds`); lines that already ended are kept.
    package func stopLines(
        batchID: UUID, reason: String, graceSeconds: Double, on database: some PostgresQueryable, logger: Logger
    )
        async throws
    {
        let (cancel, stop) = (JobStateMachine.edge(.cancel), JobStateMachine.edge(.askToStop))
        try await database.run(
            """
            WITH canceled AS (
                UPDATE jobs SET status = \(cancel.to), done_at = now(), error = \(reason)
                WHERE batch_id = \(batchID) AND status = \(cancel.from)
            )
            UPDATE jobs SET stop_reason = 'canceled',
                            lease_expires_at = least(lease_expires_at, now() + make_interval(secs => \(graceSeconds)))
            WHERE batch_id = \(batchID) AND status = \(stop.from) AND stop_reason IS DISTINCT FROM 'canceled'
            """, logger: logger)
    }

    /// Takes the oldest batch waiting for validation for one attempt: counts the attempt and sets
    /// when the next may start, committed before the validation begins, so an attempt that crashes
    /// its broker still counts. A batch being validated (its row locked) or backing off is skipped.
    package func beginNextValidation(
        backoffSeconds: Double, on database: some PostgresQueryable, logger: Logger
    ) async throws
        -> (id: UUID, attempts: Int32, lastError: String?)?
    {
        let rows = try await database.run(
            """
            UPDATE batches SET step_attempts = step_attempts + 1,
                               step_retry_at = now() + make_interval(secs => \(backoffSeconds) * power(2, step_attempts))
            WHERE id = (
                SELECT id FROM batches
                WHERE status IN (\(BatchStateMachine.sources(of: .validated))) AND (step_retry_at IS NULL OR step_retry_at <= now())
                ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED
            )
            RETURNING id, step_attempts, step_error
            """, logger: logger)
        for try await (id, attempts, error) in rows.decode((UUID, Int32, String?).self) { return (id, attempts, error) }
        return nil
    }

    /// Counts an attempt at writing a finished batch's results, like ``beginNextValidation``; nil
    /// when the batch is backing off from a failed attempt, being finalised elsewhere, or done.
    package func beginFinalising(
        id: UUID, backoffSeconds: Double, on database: some PostgresQueryable, logger: Logger
    ) async throws
        -> (attempts: Int32, lastError: String?)?
    {
        let rows = try await database.run(
            """
            UPDATE batches SET step_attempts = step_attempts + 1,
                               step_retry_at = now() + make_interval(secs => \(backoffSeconds) * power(2, step_attempts))
            WHERE id = (
                SELECT id FROM batches
                WHERE id = \(id) AND status IN (\(BatchStateMachine.finishing)) AND (step_retry_at IS NULL OR step_retry_at <= now())
                FOR UPDATE SKIP LOCKED
            )
            RETURNING step_attempts, step_error
            """, logger: logger)
        for try await (attempts, error) in rows.decode((Int32, String?).self) { return (attempts, error) }
        return nil
    }

    /// Deletes up to `batchSize` batches that ended longer ago than `retentionSeconds`, with their
    /// output and error files, and their input files unless a batch still kept uses them; returns how many.
    package func pruneEnded(
        retentionSeconds: Double, batchSize: Int, now: Date? = nil, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        let rows = try await database.run(
            """
            WITH old AS (
                SELECT id FROM batches
                WHERE completed_at < \(secondsAgo: retentionSeconds, clock: now)
                  AND status IN (\(BatchStatus.allCases.filter(\.isTerminal)))
                ORDER BY completed_at LIMIT \(batchSize)
                FOR UPDATE SKIP LOCKED
            ), pruned AS (
                DELETE FROM batches WHERE id = ANY (ARRAY(SELECT id FROM old))
                RETURNING input_file_id, output_file_id, error_file_id
            ), files_gone AS (
                DELETE FROM files
                WHERE id IN (SELECT input_file_id FROM pruned UNION ALL SELECT output_file_id FROM pruned
                             UNION ALL SELECT error_file_id FROM pruned)
                  -- A file a batch still kept reads as its input stays (the statement sees those batches as they were).
                  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.input_file_id = files.id AND b.id <> ALL (ARRAY(SELECT id FROM old)))
            )
            SELECT count(*) FROM pruned
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }

    /// A temporary table of every line's custom id in this validation: repeats are found by the
    /// database, however many lines the file has, and the table goes with the transaction. It has
    /// no index: lines are appended as they are read and repeats found once, at the end.
    package func createCustomIDTable(on connection: PostgresConnection, logger: Logger) async throws {
        try await connection.run(
            "CREATE TEMPORARY TABLE batch_custom_ids (custom_id text NOT NULL, line bigint NOT NULL) ON COMMIT DROP",
            logger: logger)
    }

    /// Appends lines' custom ids to the validation's table.
    package func recordCustomIDs(_ ids: [(customID: String, line: Int64)], on connection: PostgresConnection, logger: Logger) async throws {
        guard !ids.isEmpty else { return }
        try await connection.run(
            """
            INSERT INTO batch_custom_ids (custom_id, line)
            SELECT * FROM unnest(\(ids.map(\.customID))::text[], \(ids.map(\.line))::int8[])
            """, logger: logger)
    }

    /// The lines that repeat a custom id of an earlier line (the first `limit`, in line order), each
    /// with the line that had it first, and how many lines repeat one in all.
    package func repeatedCustomIDs(
        limit: Int, on connection: PostgresConnection, logger: Logger
    ) async throws
        -> (first: [(line: Int64, customID: String, firstLine: Int64)], count: Int)
    {
        let rows = try await connection.run(
            """
            WITH numbered AS (
                SELECT custom_id, line, min(line) OVER (PARTITION BY custom_id) AS first_line FROM batch_custom_ids
            ), repeats AS (
                SELECT line, custom_id, first_line FROM numbered WHERE line > first_line
            )
            SELECT line, custom_id, first_line, (SELECT count(*) FROM repeats) FROM repeats ORDER BY line LIMIT \(limit)
            """, logger: logger)
        var first: [(line: Int64, customID: String, firstLine: Int64)] = []
        var count = 0
        for try await (line, customID, firstLine, total) in rows.decode((Int64, String, Int64, Int).self) {
            first.append((line, customID, firstLine))
            count = total
        }
        return (first, count)
    }

    /// Records why an attempt at the batch's current step failed; the next attempt waits its backoff.
    package func recordStepError(id: UUID, error: String, on database: some PostgresQueryable, logger: Logger) async throws {
        try await database.run("UPDATE batches SET step_error = \(error) WHERE id = \(id)", logger: logger)
    }

    /// The batch, locked for this transaction if it still waits for validation; nil if another
    /// replica holds it or it has moved on.
    package func lockToValidate(id: UUID, on connection: PostgresConnection, logger: Logger) async throws -> BatchRecord? {
        let rows = try await connection.run(
            "SELECT \(unescaped: Self.columns) FROM batches WHERE id = \(id) AND status IN (\(BatchStateMachine.sources(of: .validated))) FOR UPDATE SKIP LOCKED",
            logger: logger
        ).collect()
        return try rows.first.map(Self.record)
    }

    package func markInProgress(id: UUID, totalLines: Int64, on database: some PostgresQueryable, logger: Logger) async throws {
        try await database.run(
            """
            UPDATE batches SET status = \(BatchStateMachine.next(from: .validating, on: .validated)!), in_progress_at = now(),
                               total_lines = \(totalLines), step_attempts = 0, step_retry_at = NULL, step_error = NULL
            WHERE id = \(id) AND status IN (\(BatchStateMachine.sources(of: .validated)))
            """, logger: logger)
    }

    /// Fails a batch that has not ended: one that failed validation, or whose steps failed too often.
    package func markFailed(id: UUID, error: String, on database: some PostgresQueryable, logger: Logger) async throws {
        try await database.run(
            """
            UPDATE batches SET status = \(BatchStatus.failed), error = \(error), completed_at = now(),
                               total_lines = CASE WHEN status = \(BatchStatus.validating) THEN 0 ELSE total_lines END
            WHERE id = \(id) AND status IN (\(BatchStateMachine.sources(of: .fail)))
            """, logger: logger)
    }

    /// Marks batches whose completion window has passed as ending; returns them.
    package func expireOverdue(now: Date? = nil, on database: some PostgresQueryable, logger: Logger) async throws -> [UUID] {
        let rows = try await database.run(
            """
            UPDATE batches SET ending = \(BatchEnding.expire.rawValue)
            WHERE status IN (\(BatchStateMachine.sources(of: .expire))) AND ending IS NULL AND job_deadline <= \(clock: now)
            RETURNING id
            """, logger: logger)
        var ids: [UUID] = []
        for try await id in rows.decode(UUID.self) { ids.append(id) }
        return ids
    }

    /// Batches with lines enqueued and not yet finalised, each with its count of unfinished lines.
    package func active(on database: some PostgresQueryable, logger: Logger) async throws -> [ActiveBatch] {
        let rows = try await database.run(
            """
            SELECT b.id, b.total_lines, b.finished_lines, b.ending,
                   (SELECT count(*) FROM jobs j WHERE j.batch_id = b.id AND j.done_at IS NULL)
            FROM batches b
            WHERE b.status IN (\(BatchStateMachine.finishing))
            ORDER BY b.created_at
            """, logger: logger)
        var batches: [ActiveBatch] = []
        for try await (id, total, finished, ending, unfinished) in rows.decode((UUID, Int64?, Int64, String?, Int).self) {
            batches.append(
                ActiveBatch(
                    id: id, totalLines: total ?? 0, finishedLines: finished, unfinished: unfinished, ending: try Self.ending(ending)))
        }
        return batches
    }

    /// Lines of the batch not yet done, failed or canceled.
    package func unfinishedLines(id: UUID, on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        let rows = try await database.run("SELECT count(*) FROM jobs WHERE batch_id = \(id) AND done_at IS NULL", logger: logger)
        for try await count in rows.decode(Int.self) { return count }
        return 0
    }

    /// Raises the batch's count of ended lines; never lowers it: every replica counts, and a
    /// replica whose count is older than the last one written must not move progress back.
    package func recordProgress(id: UUID, finishedLines: Int64, on database: some PostgresQueryable, logger: Logger) async throws {
        try await database.run(
            "UPDATE batches SET finished_lines = \(finishedLines) WHERE id = \(id) AND finished_lines < \(finishedLines)",
            logger: logger)
    }

    /// Locks an active batch for finalising; nil if another replica holds it or it has moved on.
    package func lockForFinalising(
        id: UUID, on connection: PostgresConnection, logger: Logger
    ) async throws -> (BatchRecord, ending: BatchEnding?)? {
        let rows = try await connection.run(
            """
            SELECT \(unescaped: Self.columns), ending FROM batches
            WHERE id = \(id) AND status IN (\(BatchStateMachine.finishing))
            FOR UPDATE SKIP LOCKED
            """, logger: logger
        ).collect()
        guard let row = rows.first else { return nil }
        let ending = try Self.ending(try row.makeRandomAccess()[Self.columnCount].decode(String?.self))
        return (try Self.record(row), ending)
    }

    /// Ends a batch locked by ``lockForFinalising`` as `BatchStateMachine` says for its ending; returns its new status.
    package func markFinished(
        _ batch: BatchRecord, ending: BatchEnding?, outputFileID: String, errorFileID: String?, totalLines: Int64, failedLines: Int64,
        on database: some PostgresQueryable, logger: Logger
    ) async throws -> BatchStatus {
        guard let status = BatchStateMachine.next(from: batch.status, on: .finish(ending: ending)) else {
            throw SpoolStoreError(description: "A \(batch.status.rawValue) batch cannot finish.")
        }
        try await database.run(
            """
            UPDATE batches SET status = \(status), output_file_id = \(outputFileID), error_file_id = \(errorFileID),
                               completed_at = now(), finished_lines = \(totalLines), failed_lines = \(failedLines)
            WHERE id = \(batch.id) AND status = \(batch.status)
            """, logger: logger)
        return status
    }

    static let columnCount = 19
    package static let columns = """
        id, status, endpoint, input_file_id, output_file_id, error_file_id, model_id, priority, completion_window, created_at,
        job_deadline, completed_at, error, file_size_bytes, total_lines, finished_lines, failed_lines, owner, tenant
        """

    package static func record(_ row: PostgresRow) throws -> BatchRecord {
        let cells = row.makeRandomAccess()
        func cell<T: PostgresDecodable>(_ index: Int, _ type: T.Type = T.self) throws -> T { try cells[index].decode(T.self) }
        return BatchRecord(
            id: try cell(0), status: try status(try cell(1)), endpoint: try cell(2), inputFileID: try cell(3), outputFileID: try cell(4),
            errorFileID: try cell(5), modelID: try cell(6), priority: try cell(7), completionWindow: try cell(8), createdAt: try cell(9),
            jobDeadline: try cell(10), completedAt: try cell(11), error: try cell(12), fileSizeBytes: try cell(13),
            totalLines: try cell(14), finishedLines: try cell(15), failedLines: try cell(16), owner: try cell(17), tenant: try cell(18))
    }

    static func ending(_ text: String?) throws -> BatchEnding? {
        guard let text else { return nil }
        guard let ending = BatchEnding(rawValue: text) else {
            throw SpoolStoreError(description: "The batches table holds an unknown ending '\(text)'.")
        }
        return ending
    }

    static func status(_ text: String) throws -> BatchStatus {
        guard let status = BatchStatus(rawValue: text) else {
            throw SpoolStoreError(description: "The batches table holds an unknown status '\(text)'.")
        }
        return status
    }
}
