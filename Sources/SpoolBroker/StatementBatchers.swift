import Foundation
import Logging
import PostgresNIO
import SpoolCore
import SpoolStore

// The broker's group commits: completes and submits that arrive together share one statement.

/// Completions: a job whose lease moved on (or an unknown or retried one) comes back nil for the
/// route to settle on its own.
typealias CompletionBatcher = GroupCommit<Completion, Completed?>

extension GroupCommit where Item == Completion, Output == Completed? {
    convenience init(store: SpoolStore, logger: Logger) {
        self.init(maxBatch: 500, maxWriters: 4) { batch in
            let completed = try await store.jobs.completeMany(batch, on: store.client, logger: logger)
            let byID = Dictionary(completed.map { ($0.requestID, $0) }, uniquingKeysWith: { first, _ in first })
            return batch.map { byID[$0.requestID] }
        }
    }

    func complete(_ completion: Completion) async throws -> Completed? { try await write(completion) }
}

/// Submits without an idempotency key: many clients' jobs in one INSERT, ids in arrival order.
typealias SubmitBatcher = GroupCommit<NewJob, Result<Void, any Error>>

extension GroupCommit where Item == NewJob, Output == Result<Void, any Error> {
    convenience init(store: SpoolStore, logger: Logger) {
        self.init(maxBatch: 500, maxWriters: 4) { batch in
            do {
                try await store.jobs.insertMany(batch, on: store.client, logger: logger)
                return batch.map { _ in .success(()) }
            } catch let error as PSQLError where batch.count > 1 {
                // One bad row must not fail its neighbours: each alone, so only it gets the error.
                logger.debug("a batched submit failed; inserting one by one", metadata: ["error": "\(error)"])
                return await withTaskGroup(of: (Int, Result<Void, any Error>).self) { group in
                    for (index, job) in batch.enumerated() {
                        group.addTask {
                            do {
                                try await store.jobs.insertMany([job], on: store.client, logger: logger)
                                return (index, .success(()))
                            } catch {
                                return (index, .failure(error))
                            }
                        }
                    }
                    var results = [Result<Void, any Error>](repeating: .success(()), count: batch.count)
                    for await (index, result) in group { results[index] = result }
                    return results
                }
            }
        }
    }

    func submit(_ job: NewJob) async throws { try await write(job).get() }
}
