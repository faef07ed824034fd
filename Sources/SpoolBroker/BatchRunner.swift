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
struct BatchRunner: Service {
    let store: SpoolStore
    let configuration: BrokerConfiguration
    let schema: SchemaReadiness
    let wakeups: Signal
    let logger: Logger

    /// Lines enqueued per statement.
    static let insertBatchSize = 5000
    /// Bad lines named in a failed batch's error; the rest are counted.
    static let namedProblems = 20

    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard (try? await schema.wait()) != nil else { return }
            await MaintenanceLoop(name: "batch maintenance", logger: logger).run(
                pass: pass, wait: { await wakeups.wait(timeout: .seconds(configuration.maintenanceIntervalSeconds)) })
        }
    }

    /// One pass over every batch with work to do.
    func pass() async throws {
        while try await validateNext() {}
        for id in try await store.batches.expireOverdue(on: store.client, logger: logger) {
            logger.notice("batch completion window passed; canceling its unfinished lines", metadata: ["batch_id": "\(id)"])
        }
        for batch in try await store.batches.active(on: store.client, logger: logger) {
            if let ending = batch.ending, batch.unfinished > 0 {
                // Again each pass: a line whose lease expired may have been requeued since.
                try await store.batches.stopLines(
                    batchID: batch.id, reason: Self.stopReason(ending), graceSeconds: configuration.stopGraceSeconds, on: store.client,
                    logger: logger)
            }
            let finished = batch.totalLines - Int32(batch.unfinished)
            if finished > batch.finishedLines {
                try await store.batches.recordProgress(id: batch.id, finishedLines: finished, on: store.client, logger: logger)
            }
            if batch.unfinished == 0 { try await finalise(batch.id) }
        }
    }

    static func stopReason(_ ending: String) -> String {
        ending == "expire"
            ? "The batch's completion window passed before this line finished."
            : "The batch was canceled before this line finished."
    }

    struct Invalid: Error {
        var message: String
    }

    /// Validates the oldest batch waiting, enqueueing its lines as it goes; any bad line rolls the
    /// whole enqueue back and fails the batch. Returns false when none was waiting.
    func validateNext() async throws -> Bool {
        let started = ContinuousClock.now
        var validated: (id: UUID, lines: Int32)?
        var invalid: String?
        do {
            try await store.client.withTransaction(logger: logger) { connection in
                guard let batch = try await store.batches.lockNextToValidate(on: connection, logger: logger) else { return }
                validated = (batch.id, 0)
                let total: Int32
                do {
                    total = try await enqueueLines(of: batch, on: connection)
                } catch let error as Invalid {
                    invalid = error.message
                    throw error  // rolls back every line enqueued so far
                }
                try await store.batches.markInProgress(id: batch.id, totalLines: total, on: connection, logger: logger)
                validated = (batch.id, total)
            }
        } catch {
            guard let message = invalid, let id = validated?.id else { throw error }
            try await store.batches.markFailed(id: id, error: message, on: store.client, logger: logger)
            logger.notice("batch failed validation", metadata: ["batch_id": "\(id)", "error": "\(message)"])
            return true
        }
        guard let validated else { return false }
        logger.info(
            "batch validated and enqueued",
            metadata: ["batch_id": "\(validated.id)", "lines": "\(validated.lines)", "seconds": "\(ContinuousClock.now - started)"])
        return true
    }

    /// Reads the input a piece at a time, checks every line, and enqueues the good ones in bulk
    /// while no bad one has been seen. Throws ``Invalid`` naming the bad lines.
    private func enqueueLines(of batch: BatchRecord, on connection: PostgresConnection) async throws -> Int32 {
        guard let endpoint = BatchEndpoint(rawValue: batch.endpoint) else {
            throw Invalid(message: "The batch's endpoint '\(batch.endpoint)' is not supported.")
        }
        guard try await store.files.holdForReading(id: batch.inputFileID, on: connection, logger: logger) else {
            throw Invalid(message: "The input file '\(batch.inputFileID)' was deleted before the batch started.")
        }
        var splitter = LineSplitter()
        var lineNumber: Int32 = 0
        var jobs: [BatchLineJob] = []
        var total: Int32 = 0
        var firstLineOf: [String: Int32] = [:]
        var problems: [String] = []
        var problemCount = 0
        func problem(_ text: String) {
            problemCount += 1
            if problems.count < Self.namedProblems { problems.append("line \(lineNumber) \(text)") }
        }
        func take(_ line: ArraySlice<UInt8>) {
            lineNumber += 1
            guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }) else { return }
            switch BatchLine.parse(line, endpoint: endpoint, defaultModel: batch.modelID) {
            case .failure(let failure):
                problem(failure.text)
            case .success(let parsed):
                if let first = firstLineOf[parsed.customID] {
                    problem("repeats the custom_id '\(parsed.customID)' of line \(first)")
                    return
                }
                firstLineOf[parsed.customID] = lineNumber
                total += 1
                if problemCount == 0 { jobs.append(BatchLineJob(line: lineNumber, customID: parsed.customID, request: parsed.request)) }
            }
        }
        func flush() async throws {
            guard problemCount == 0, !jobs.isEmpty else { return }
            try await store.jobs.insertBatchLines(
                jobs, batchID: batch.id, priority: batch.priority, submittedBy: batch.owner ?? "anonymous", on: connection, logger: logger)
            jobs.removeAll(keepingCapacity: true)
        }
        var sequence: Int32 = 0
        while let piece = try await store.files.chunk(fileID: batch.inputFileID, sequence: sequence, on: connection, logger: logger) {
            sequence += 1
            for line in splitter.lines(in: piece.readableBytesView) {
                take(line)
                if jobs.count >= Self.insertBatchSize { try await flush() }
            }
        }
        if let last = splitter.finish() { take(last) }
        if problemCount > 0 {
            let more = problemCount > problems.count ? "; and \(problemCount - problems.count) more" : ""
            throw Invalid(
                message: "The input file has \(problemCount) bad line\(problemCount == 1 ? "" : "s"); nothing was enqueued: "
                    + problems.joined(separator: "; ") + more + ".")
        }
        guard total > 0 else { throw Invalid(message: "The input file has no lines; nothing was enqueued.") }
        try await flush()
        return total
    }

    /// Writes the output file (one line per success) and the error file (one per failure or
    /// cancel), and ends the batch; all in one transaction, so a crash midway leaves it to the next pass.
    func finalise(_ id: UUID) async throws {
        try await store.client.withTransaction(logger: logger) { connection in
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
                    on: connection, logger: logger)
            }
            let outputs = try await FileContentWriter(fileID: outputID, limit: .max, connection: connection, logger: logger)
            let errors = try await FileContentWriter(fileID: errorID, limit: .max, connection: connection, logger: logger)
            var failed: Int32 = 0
            var total: Int32 = 0
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
                        let code = line.status == .canceled
                            ? (ending == "expire" ? "batch_expired" : ending == "cancel" ? "batch_cancelled" : "canceled")
                            : (line.errorType ?? "job_failed")
                        let message = line.error ?? (line.status == .canceled ? Self.stopReason(ending ?? "cancel") : "The job failed.")
                        errorBytes += BatchLine.failure(customID: line.customID, requestID: requestID, code: code, message: message)
                    }
                }
                if !outputBytes.isEmpty { try await outputs.append(outputBytes) }
                if !errorBytes.isEmpty { try await errors.append(errorBytes) }
            }
            _ = try await outputs.finish(expectedSHA256: nil)
            _ = try await errors.finish(expectedSHA256: nil)
            if failed == 0 { _ = try await store.files.delete(id: errorID, on: connection, logger: logger) }
            let status: BatchStatus = ending == "cancel" ? .cancelled : ending == "expire" ? .expired : .completed
            try await store.batches.markFinished(
                id: id, status: status, outputFileID: outputID, errorFileID: failed == 0 ? nil : errorID, totalLines: total,
                failedLines: failed, on: connection, logger: logger)
            logger.info(
                "batch finished", metadata: ["batch_id": "\(id)", "status": "\(status.rawValue)", "lines": "\(total)", "failed": "\(failed)"])
        }
    }
}
