import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// What a stream write did.
package enum StreamAppendOutcome: Sendable, Equatable {
    case appended(seq: Int32)
    /// The attempt no longer holds the job (or there is no such job).
    case refused(LeaseRefusal)
    /// The job already has as many chunks, or bytes of chunks, as a job keeps.
    case full
}

/// The `job_stream_chunks` table: what a RunPod worker's generator yields, read once each by `/stream/{id}`.
package struct JobStreamChunksTable: Sendable {
    package init() {}

    /// The most chunks, and bytes of chunks, one job keeps: a generator past either is refused, so
    /// one job cannot fill the disk.
    package static let maxChunksPerJob = 10_000
    package static let maxBytesPerJob: Int64 = 64 << 20

    /// Appends a chunk to the running job `leaseToken` holds, after its earlier chunks.
    package func append(
        requestID: UUID, leaseToken: UUID, chunk: JSONValue, maxChunks: Int = maxChunksPerJob, maxBytes: Int64 = maxBytesPerJob,
        on database: some PostgresQueryable, logger: Logger
    ) async throws -> StreamAppendOutcome {
        let text = chunk.jsonText
        // The job's row lock orders one attempt's chunks even if two writes race; the last chunk
        // (one primary-key probe) holds the count and the running total.
        let rows = try await database.run(
            """
            WITH job AS (
                SELECT id FROM jobs WHERE request_id = \(requestID) AND lease_token = \(leaseToken) AND status = 'running' FOR UPDATE
            ), last AS (
                SELECT c.seq, c.total_bytes FROM job_stream_chunks c, job WHERE c.job_id = job.id ORDER BY c.seq DESC LIMIT 1
            ), next AS (
                SELECT job.id, coalesce((SELECT seq FROM last), 0) + 1 AS seq,
                       coalesce((SELECT total_bytes FROM last), 0) + octet_length(\(text)::text) AS total_bytes
                FROM job
            ), inserted AS (
                INSERT INTO job_stream_chunks (job_id, seq, chunk, total_bytes)
                SELECT id, seq, \(text)::jsonb, total_bytes FROM next WHERE seq <= \(maxChunks) AND total_bytes <= \(maxBytes)
                RETURNING seq
            )
            SELECT (SELECT seq FROM next), (SELECT seq FROM inserted)
            """, logger: logger)
        guard let (next, inserted) = try await rows.collect().first?.decode((Int32?, Int32?).self), next != nil else {
            return .refused(try await JobsTable().refusal(requestID: requestID, leaseToken: leaseToken, on: database, logger: logger))
        }
        guard let inserted else { return .full }
        return .appended(seq: inserted)
    }

    /// The chunks no read has returned yet, in order, now marked read: each is handed out once.
    package func takeUnread(jobID: Int64, on database: some PostgresQueryable, logger: Logger) async throws -> [JSONValue] {
        let rows = try await database.run(
            """
            UPDATE job_stream_chunks SET read_at = now()
            WHERE job_id = \(jobID) AND read_at IS NULL
            RETURNING seq, chunk::text
            """, logger: logger)
        var chunks: [(Int32, JSONValue)] = []
        for try await (seq, text) in rows.decode((Int32, String).self) { chunks.append((seq, try JSONValue.parse(text))) }
        // RETURNING keeps no order.
        return chunks.sorted { $0.0 < $1.0 }.map(\.1)
    }
}
