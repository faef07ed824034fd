import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// What a submit did.
public enum SubmitOutcome: Sendable, Equatable {
    /// A new pending job.
    case created(UUID)
    /// A retry with the same idempotency key and body: the first job, nothing created.
    case replayed(UUID)
    /// The idempotency key was used for a different request within the window: nothing created.
    case idempotencyKeyReused
}

/// The broker's view of PostgreSQL: the pool and every table, and the operations that span tables.
public struct SpoolStore: Sendable {
    public let client: PostgresClient
    public let jobs = JobsTable()
    public let idempotencyKeys = IdempotencyKeysTable()
    public let apiKeys = APIKeysTable()
    public let audit = AuditEventsTable()
    public let jobLogs = JobLogsTable()
    public let webhookDeliveries = WebhookDeliveriesTable()
    public let workers = WorkersTable()
    public let files = FilesTable()
    public let rateBuckets = RateBucketsTable()
    public let batches = BatchesTable()
    public let streamChunks = JobStreamChunksTable()

    public init(client: PostgresClient) {
        self.client = client
    }

    /// Submits a job; with an idempotency key, the key and the job commit together or not at all.
    public func submit(
        _ request: SubmitRequest, submittedBy: String, tenant: String, weight: Double,
        idempotency: (key: String, requestHash: String, windowSeconds: Int)?, logger: Logger
    ) async throws -> SubmitOutcome {
        let requestID = UUID()
        guard let idempotency else {
            try await jobs.insert(
                request, requestID: requestID, submittedBy: submittedBy, tenant: tenant, weight: weight, on: client, logger: logger)
            return .created(requestID)
        }
        return try await client.transaction(logger: logger) { connection in
            switch try await idempotencyKeys.claim(
                owner: submittedBy, key: idempotency.key, requestHash: idempotency.requestHash, requestID: requestID,
                windowSeconds: idempotency.windowSeconds, on: connection, logger: logger)
            {
            case .claimed:
                try await jobs.insert(
                    request, requestID: requestID, submittedBy: submittedBy, tenant: tenant, weight: weight, on: connection, logger: logger)
                return .created(requestID)
            case .replay(let existing):
                return .replayed(existing)
            case .reusedWithDifferentRequest:
                return .idempotencyKeyReused
            }
        }
    }
}
