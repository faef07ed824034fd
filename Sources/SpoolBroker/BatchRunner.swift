import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Moves batches along: validates and enqueues new ones, refreshes progress, ends batches whose
/// window passed, and writes the output files once every line has finished.
///
/// Every replica runs it. Validation and finalisation each run in one transaction that holds the
/// batch's row (others skip it), so a broker that dies midway leaves nothing half done: the next
/// pass, on any replica, starts that step again.
struct BatchRunner: MaintenanceService {
    let store: Store
    let configuration: BrokerConfiguration
    let schema: SchemaReadiness
    let wakeups: Signal
    let logger: Logger

    /// Lines enqueued per statement.
    static let insertBatchSize = 5000
    /// Bad lines named in a failed batch's error; the rest are counted.
    static let namedProblems = 20
    /// Attempts at a step (validation, writing the results) before the batch fails; an attempt
    /// that crashed its broker counts too.
    static let maxStepAttempts: Int32 = 3
    /// Wait after a failed attempt, doubled with each.
    static let stepBackoffSeconds: Double = 10

    static let passName = "batch maintenance"

    /// The interval, or sooner when a batch is created or canceled.
    func waitForNextPass() async throws {
        await wakeups.wait(timeout: .seconds(configuration.maintenanceIntervalSeconds))
        try Task.checkCancellation()
    }

    /// One pass over every batch with work to do. A batch whose step fails is logged, backs off
    /// and is passed over: one bad batch never holds up the others.
    func pass() async throws {
        while try await validateNext() {}
        for id in try await store.batches.expireOverdue(on: store.client, logger: logger) {
            logger.notice("batch completion window passed; canceling its unfinished lines", metadata: ["batch_id": "\(id)"])
        }
        for batch in try await store.batches.active(on: store.client, logger: logger) {
            do {
                if let ending = batch.ending, batch.unfinished > 0 {
                    // Again each pass: a line whose lease expired may have been requeued since.
                    try await store.batches.stopLines(
                        batchID: batch.id, reason: ending.lineStopReason, graceSeconds: configuration.stopGraceSeconds, on: store.client,
                        logger: logger)
                }
                let finished = batch.totalLines - Int64(batch.unfinished)
                if finished > batch.finishedLines {
                    try await store.batches.recordProgress(id: batch.id, finishedLines: finished, on: store.client, logger: logger)
                }
                if batch.unfinished == 0 { try await finaliseWithRetries(batch.id) }
            } catch {
                if Task.isCancelled { throw error }
                logger.error("a batch pass step failed; other batches go on", metadata: ["batch_id": "\(batch.id)", "error": "\(error)"])
            }
        }
    }

    struct Invalid: Error {
        var message: String
    }

    /// Validates the oldest batch waiting (and not backing off), enqueueing its lines as it goes;
    /// any bad line rolls the whole enqueue back and fails the batch. An attempt that fails
    /// otherwise (or crashed a broker) is retried after a backoff, and after ``maxStepAttempts``
    /// the batch fails with the reason. Returns false when none was waiting.
    func validateNext() async throws -> Bool {
        guard let next = try await store.batches.beginNextValidation(backoffSeconds: Self.stepBackoffSeconds, on: store.client, logger: logger)
        else { return false }
        if next.attempts > Self.maxStepAttempts {
            let reason = next.lastError ?? "the broker stopped or crashed during each attempt"
            try await store.batches.markFailed(
                id: next.id, error: "Validation did not finish after \(Self.maxStepAttempts) attempts: \(reason).", on: store.client,
                logger: logger)
            logger.error("batch failed: its validation did not finish", metadata: ["batch_id": "\(next.id)", "reason": "\(reason)"])
            return true
        }
        let started = ContinuousClock.now
        var invalid: String?
        var lines: Int64?
        do {
            try await store.client.transaction(logger: logger) { connection in
                guard let batch = try await store.batches.lockToValidate(id: next.id, on: connection, logger: logger) else { return }
                let total: Int64
                do {
                    total = try await enqueueLines(of: batch, on: connection)
                } catch let error as Invalid {
                    invalid = error.message
                    throw error  // rolls back every line enqueued so far
                }
                try await store.batches.markInProgress(id: batch.id, totalLines: total, on: connection, logger: logger)
                lines = total
            }
        } catch {
            if let message = invalid {
                try await store.batches.markFailed(id: next.id, error: message, on: store.client, logger: logger)
                logger.notice("batch failed validation", metadata: ["batch_id": "\(next.id)", "error": "\(message)"])
                return true
            }
            if Task.isCancelled { throw error }
            // Not the file's fault as far as anyone can tell: try again later, up to the limit.
            try? await store.batches.recordStepError(id: next.id, error: Self.describe(error), on: store.client, logger: logger)
            logger.error(
                "batch validation failed; it will be retried",
                metadata: ["batch_id": "\(next.id)", "attempt": "\(next.attempts)", "error": "\(error)"])
            return true
        }
        if let lines {
            logger.info(
                "batch validated and enqueued",
                metadata: ["batch_id": "\(next.id)", "lines": "\(lines)", "seconds": "\(ContinuousClock.now - started)"])
        }
        return true
    }

    /// An error as a batch's `error` shows it: what PostgreSQL said, or the error's own words.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError, let message = error.serverInfo?[.message] { return "PostgreSQL: \(message)" }
        return String(describing: error)
    }

    /// Reads the input a piece at a time, checks every line, and enqueues the good ones in bulk
    /// while no bad one has been seen. Throws ``Invalid`` naming the bad lines.
    ///
    /// Memory stays bounded whatever the file: one piece and one line (at most
    /// `maxBatchLineBytes`) at a time, and custom ids are checked for repeats in a temporary table
    /// of this transaction (one pass at the end), not held in the broker.
    private func enqueueLines(of batch: BatchRecord, on connection: PostgresConnection) async throws -> Int64 {
        guard let endpoint = BatchEndpoint(rawValue: batch.endpoint) else {
            throw Invalid(message: "The batch's endpoint '\(batch.endpoint)' is not supported.")
        }
        guard try await store.files.holdForReading(id: batch.inputFileID, on: connection, logger: logger) else {
            throw Invalid(message: "The input file '\(batch.inputFileID)' was deleted before the batch started.")
        }
        try await store.batches.createCustomIDTable(on: connection, logger: logger)
        var splitter = LineSplitter(maxLineBytes: configuration.maxBatchLineBytes)
        var lineNumber: Int64 = 0
        var jobs: [BatchLineJob] = []
        var customIDs: [(customID: String, line: Int64)] = []
        var total: Int64 = 0
        var problems: [(line: Int64, text: String)] = []
        var problemCount = 0
        func problem(_ line: Int64, _ text: String) {
            problemCount += 1
            // The first lines at fault, in line order: repeats are found at the end, after later lines.
            problems.append((line, "line \(line) \(text)"))
            if problems.count > Self.namedProblems {
                problems.sort { $0.line < $1.line }
                problems.removeLast()
            }
        }
        func take(_ line: LineSplitter.Line) throws {
            lineNumber += 1
            guard lineNumber <= Int64(Int32.max) else {
                throw Invalid(message: "The input file has more than \(Int32.max) lines; split it into several batches.")
            }
            guard case .text(let text) = line else {
                problem(lineNumber, "is longer than \(configuration.maxBatchLineBytes) bytes (--max-batch-line-bytes)")
                return
            }
            guard text.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) else { return }
            switch BatchLine.parse(text, endpoint: endpoint, defaultModel: batch.modelID) {
            case .failure(let failure):
                problem(lineNumber, failure.text)
            case .success(let parsed):
                total += 1
                customIDs.append((parsed.customID, lineNumber))
                if problemCount == 0 {
                    jobs.append((Int32(lineNumber), parsed.customID, parsed.request))
                }
            }
        }
        func flush() async throws {
            try await store.batches.recordCustomIDs(customIDs, on: connection, logger: logger)
            customIDs.removeAll(keepingCapacity: true)
            guard problemCount == 0, !jobs.isEmpty else {
                jobs.removeAll(keepingCapacity: true)
                return
            }
            try await store.jobs.insertBatchLines(
                jobs, batchID: batch.id, priority: batch.priority, submittedBy: batch.owner ?? "anonymous", tenant: batch.tenant,
                weight: configuration.tenants.limits(of: batch.tenant).weight, on: connection, logger: logger)
            jobs.removeAll(keepingCapacity: true)
        }
        var sequence: Int32 = 0
        while let piece = try await store.files.chunk(fileID: batch.inputFileID, sequence: sequence, on: connection, logger: logger) {
            sequence += 1
            for line in splitter.lines(in: piece.readableBytesView) {
                try take(line)
                if customIDs.count >= Self.insertBatchSize { try await flush() }
            }
        }
        if let last = splitter.finish() { try take(last) }
        try await flush()
        // Repeats are found once every line is in: lines enqueued meanwhile roll back with the rest.
        let repeats = try await store.batches.repeatedCustomIDs(limit: Self.namedProblems, on: connection, logger: logger)
        for repeated in repeats.first {
            problem(repeated.line, "repeats the custom_id '\(repeated.customID)' of line \(repeated.firstLine)")
        }
        problemCount += repeats.count - repeats.first.count
        if problemCount > 0 {
            problems.sort { $0.line < $1.line }
            let more = problemCount > problems.count ? "; and \(problemCount - problems.count) more" : ""
            throw Invalid(
                message: "The input file has \(problemCount) bad line\(problemCount == 1 ? "" : "s"); nothing was enqueued: "
                    + problems.map(\.text).joined(separator: "; ") + more + ".")
        }
        guard total > 0 else { throw Invalid(message: "The input file has no lines; nothing was enqueued.") }
        return total
    }

    /// Finalises a batch whose lines have all ended, counting the attempt first; after
    /// ``maxStepAttempts`` failed (or crashed) attempts the batch fails with the reason.
    func finaliseWithRetries(_ id: UUID) async throws {
        guard let attempt = try await store.batches.beginFinalising(id: id, backoffSeconds: Self.stepBackoffSeconds, on: store.client, logger: logger)
        else { return }
        if attempt.attempts > Self.maxStepAttempts {
            let reason = attempt.lastError ?? "the broker stopped or crashed during each attempt"
            try await store.batches.markFailed(
                id: id,
                error:
                    "Its results could not be written after \(Self.maxStepAttempts) attempts: \(reason). Its jobs' results are still readable by request id.",
                on: store.client, logger: logger)
            logger.error("batch failed: its results could not be written", metadata: ["batch_id": "\(id)", "reason": "\(reason)"])
            return
        }
        do {
            try await finalise(id)
        } catch {
            if Task.isCancelled { throw error }
            try? await store.batches.recordStepError(id: id, error: Self.describe(error), on: store.client, logger: logger)
            throw error
        }
    }

    /// Writes the output file (one line per success) and the error file (one per failure or
    /// cancel), and ends the batch; all in one transaction, so a crash midway leaves it to the next pass.
    func finalise(_ id: UUID) async throws {
        try await store.client.transaction(logger: logger) { connection in
            guard let (batch, ending) = try await store.batches.lockForFinalising(id: id, on: connection, logger: logger) else { return }
            // Counted again under the batch's lock: the pass's count is from before it.
            guard try await store.batches.unfinishedLines(id: id, on: connection, logger: logger) == 0 else { return }
            let name = id.uuidString.lowercased()
            let outputID = FilesTable.newID()
            let errorID = FilesTable.newID()
            for (fileID, kind) in [(outputID, "output"), (errorID, "errors")] {
                try await store.files.create(
                    id: fileID, filename: "batch-\(name)-\(kind).jsonl", purpose: "batch-api", fileType: "jsonl",
                    contentType: "application/jsonl", expectedSHA256: nil, uploadTokenHash: nil, owner: batch.owner ?? "anonymous",
                    tenant: batch.tenant, on: connection, logger: logger)
            }
            let outputs = try await FileContentWriter(fileID: outputID, limit: .max, connection: connection, logger: logger)
            let errors = try await FileContentWriter(fileID: errorID, limit: .max, connection: connection, logger: logger)
            var failed: Int64 = 0
            var total: Int64 = 0
            var after: Int32 = 0
            while true {
                let page = try await store.jobs.batchResults(batchID: id, after: after, limit: 2000, on: connection, logger: logger)
                guard let last = page.last else { break }
                after = last.line
                var outputBytes: [UInt8] = []
                var errorBytes: [UInt8] = []
                for line in page {
                    total += 1
                    let requestID = line.requestID.uuidString.lowercased()
                    if line.status == .done {
                        outputBytes += BatchLine.success(customID: line.customID, requestID: requestID, outputs: line.outputs)
                    } else {
                        failed += 1
                        let code = line.status == .canceled ? (ending?.lineErrorCode ?? "canceled") : (line.errorType ?? "job_failed")
                        let message =
                            line.error ?? (line.status == .canceled ? (ending ?? .cancel).lineStopReason : "The job failed.")
                        errorBytes += BatchLine.failure(customID: line.customID, requestID: requestID, code: code, message: message)
                    }
                }
                if !outputBytes.isEmpty { try await outputs.append(outputBytes) }
                if !errorBytes.isEmpty { try await errors.append(errorBytes) }
            }
            _ = try await outputs.finish(expectedSHA256: nil)
            _ = try await errors.finish(expectedSHA256: nil)
            if failed == 0 { _ = try await store.files.delete(id: errorID, tenant: nil, on: connection, logger: logger) }
            let status = try await store.batches.markFinished(
                batch, ending: ending, outputFileID: outputID, errorFileID: failed == 0 ? nil : errorID, totalLines: total,
                failedLines: failed, on: connection, logger: logger)
            logger.info(
                "batch finished", metadata: ["batch_id": "\(id)", "status": "\(status.rawValue)", "lines": "\(total)", "failed": "\(failed)"])
        }
    }
}
