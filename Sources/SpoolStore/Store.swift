import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// What a submit did.
package enum SubmitOutcome: Sendable, Equatable {
    /// A new pending job.
    case created(UUID)
    /// A retry with the same idempotency key and body: the first job, nothing created.
    case replayed(UUID)
    /// The idempotency key was used for a different request within the window: nothing created.
    case idempotencyKeyReused
}

/// What a bulk submit did.
package enum BulkSubmitOutcome: Sendable {
    /// Every job's request id, in order; `replayed` when its idempotency key named an earlier job.
    case submitted([(requestID: UUID, replayed: Bool)])
    /// The job at `index` has an idempotency key used for a different request: nothing stored.
    case idempotencyKeyReused(index: Int)
}

/// The broker's view of PostgreSQL: the pool and every table, and the operations that span tables.
package struct Store: Sendable {
    package let client: PostgresClient
    package let jobs = JobsTable()
    package let idempotencyKeys = IdempotencyKeysTable()
    package let apiKeys = APIKeysTable()
    package let audit = AuditEventsTable()
    package let jobLogs = JobLogsTable()
    package let webhookDeliveries = WebhookDeliveriesTable()
    package let workers = WorkersTable()
    package let files = FilesTable()
    package let rateBuckets = RateBucketsTable()
    package let batches = BatchesTable()
    package let streamChunks = JobStreamChunksTable()

    package init(client: PostgresClient) {
        self.client = client
    }

    /// Submits a job; with an idempotency key, the key and the job commit together or not at all.
    package func submit(
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

    /// Submits many jobs in one transaction, each with its own optional idempotency key (its
    /// position in `idempotency` matches `jobs`): all are stored, or, when a key was used for
    /// another request, none. Jobs whose key replays an earlier submit are not stored again.
    package func submitMany(
        _ jobs: [NewJob], idempotency: [(key: String, requestHash: String)?], owner: String, windowSeconds: Int, logger: Logger
    ) async throws -> BulkSubmitOutcome {
        precondition(jobs.count == idempotency.count, "one idempotency entry per job")
        guard idempotency.contains(where: { $0 != nil }) else {
            try await self.jobs.insertMany(jobs, on: client, logger: logger)
            return .submitted(jobs.map { ($0.requestID, false) })
        }
        do {
            return try await client.transaction(logger: logger) { connection in
                let keyed = jobs.indices.compactMap { index in idempotency[index].map { (index: index, key: $0) } }
                let claims = try await idempotencyKeys.claimMany(
                    owner: owner, keys: keyed.map { ($0.key.key, $0.key.requestHash, jobs[$0.index].requestID) },
                    windowSeconds: windowSeconds, on: connection, logger: logger)
                var answers = jobs.map { (requestID: $0.requestID, replayed: false) }
                for (entry, claim) in zip(keyed, claims) {
                    switch claim {
                    case .claimed: break
                    case .replay(let existing): answers[entry.index] = (existing, true)
                    // Thrown, so the keys claimed so far roll back with the transaction.
                    case .reusedWithDifferentRequest: throw KeyReused(index: entry.index)
                    }
                }
                let fresh = jobs.indices.filter { !answers[$0].replayed }.map { jobs[$0] }
                try await self.jobs.insertMany(fresh, on: connection, logger: logger)
                return .submitted(answers)
            }
        } catch let reused as KeyReused {
            return .idempotencyKeyReused(index: reused.index)
        }
    }

    private struct KeyReused: Error {
        var index: Int
    }
}
