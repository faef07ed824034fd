import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// One line of a batch, validated, to enqueue as a job: its 1-based number in the input file (its
/// place in the output, and what makes it unique), its custom id and its job.
package typealias BatchLineJob = (line: Int32, customID: String, request: SubmitRequest)

/// A finished line of a batch, for its output files.
package struct BatchLineResult: Sendable {
    package var line: Int32
    package var customID: String
    package var requestID: UUID
    package var status: JobStatus
    package var outputs: String?
    package var error: String?
    package var errorType: String?
}

extension JobsTable {
    /// Enqueues batch lines in one statement (call it with a few thousand at a time), at the
    /// batch's priority; (batch_id, batch_line) is unique, so a line is never enqueued twice.
    package func insertBatchLines(
        _ lines: [BatchLineJob], batchID: UUID, priority: Int32, submittedBy: String, tenant: String, weight: Double,
        on database: some PostgresQueryable, logger: Logger
    ) async throws {
        guard !lines.isEmpty else { return }
        let models = lines.map(\.request.model)
        let payloads = lines.map { JSONValue.object($0.request.payload).jsonText }
        let infos = lines.map { JSONValue.object($0.request.info).jsonText }
        let customIDs = lines.map(\.customID)
        let numbers = lines.map(\.line)
        try await database.run(
            """
            WITH item AS (
                SELECT line.*, \(priority)::int4 AS priority, \(tenant)::text AS tenant, \(weight)::float8 AS weight, line.number AS arrival
                FROM unnest(\(models)::text[], \(payloads)::text[], \(infos)::text[], \(customIDs)::text[], \(numbers)::int4[])
                     AS line(model, payload, info, custom_id, number)
            ), \(unescaped: JobsTable.fairTagsSQL),
            inserted AS (
                INSERT INTO jobs (request_id, model, priority, payload, info, submitted_by, batch_id, batch_line, custom_id, tenant,
                                  fair_tag)
                SELECT gen_random_uuid(), item.model, item.priority, item.payload::jsonb, item.info::jsonb, \(submittedBy), \(batchID),
                       item.number, item.custom_id, item.tenant, \(unescaped: JobsTable.fairTagSQL)
                FROM item JOIN tags USING (model, priority, tenant)
                ORDER BY item.number
                RETURNING model
            )
            SELECT pg_notify('\(unescaped: JobsTable.pendingChannel)', model) FROM (SELECT DISTINCT model FROM inserted) AS models
            """, logger: logger)
    }

    /// Up to `limit` of the batch's lines after line `after`, in line order, for its output files.
    package func batchResults(
        batchID: UUID, after: Int32, limit: Int, on database: some PostgresQueryable, logger: Logger
    ) async throws
        -> [BatchLineResult]
    {
        let rows = try await database.run(
            """
            SELECT batch_line, custom_id, request_id, status, outputs::text, error, error_type
            FROM jobs WHERE batch_id = \(batchID) AND batch_line > \(after)
            ORDER BY batch_line LIMIT \(limit)
            """, logger: logger)
        var results: [BatchLineResult] = []
        for try await (line, customID, requestID, status, outputs, error, errorType) in rows.decode(
            (Int32, String?, UUID, String, String?, String?, String?).self)
        {
            results.append(
                BatchLineResult(
                    line: line, customID: customID ?? "", requestID: requestID, status: try Self.status(status), outputs: outputs,
                    error: error, errorType: errorType))
        }
        return results
    }
}
