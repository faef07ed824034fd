import Foundation
import Logging
import PostgresNIO
import SpoolCore
import SpoolStore

// The broker's group commits: completes and submits that arrive together share one statement.
// A statement PostgreSQL refuses because of one item's value is split until only that item fails.

extension PSQLError {
    /// Whether PostgreSQL refused the statement because of a value it carried (a data exception,
    /// a constraint, a size limit): the sender's fault, not an outage.
    var refusesAValue: Bool {
        guard let state = serverInfo?[.sqlState] else { return false }
        return ["22", "23", "54"].contains(String(state.prefix(2)))
    }
}

/// Whether a failed group write may be one item's fault.
@Sendable func isRefusedValue(_ error: any Error) -> Bool {
    (error as? PSQLError)?.refusesAValue ?? false
}

/// Completions: a job whose lease moved on (or an unknown or retried one) comes back nil for the
/// route to settle on its own.
typealias CompletionGroupCommit = GroupCommit<Completion, Completed?>

extension GroupCommit where Item == Completion, Output == Completed? {
    convenience init(store: Store, logger: Logger) {
        self.init(maxBatch: 500, maxWriters: 4, isItemError: isRefusedValue) { batch in
            let completed = try await store.jobs.completeMany(batch, on: store.client, logger: logger)
            let byID = Dictionary(completed.map { ($0.requestID, $0) }, uniquingKeysWith: { first, _ in first })
            return batch.map { byID[$0.requestID] }
        }
    }

    func complete(_ completion: Completion) async throws -> Completed? { try await write(completion) }
}

/// Submits without an idempotency key: many clients' jobs in one INSERT, ids in arrival order.
typealias SubmitGroupCommit = GroupCommit<NewJob, Void>

extension GroupCommit where Item == NewJob, Output == Void {
    convenience init(store: Store, logger: Logger) {
        self.init(maxBatch: 500, maxWriters: 4, isItemError: isRefusedValue) { batch in
            try await store.jobs.insertMany(batch, on: store.client, logger: logger)
            return batch.map { _ in }
        }
    }

    func submit(_ job: NewJob) async throws { try await write(job) }
}
