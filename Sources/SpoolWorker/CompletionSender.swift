import Foundation
import SpoolCore

/// Sends completions to the broker in batches (group commit): a completion goes at once while
/// fewer than two requests are out; those that finish while both are out go together in the next.
/// A worker running many short jobs reports them in a few requests instead of one each.
typealias CompletionSender = GroupCommit<CompleteManyItem, CompleteManyResult>

extension GroupCommit where Item == CompleteManyItem, Output == CompleteManyResult {
    /// `retryFor`: how long a batch is retried through broker outages before its jobs are left to their leases.
    convenience init(broker: BrokerConnection, retryFor: Duration) {
        // A batch the broker refuses whole (too large, say) is split: each completion's fate is its own.
        self.init(
            maxBatch: CompleteManyRequest.maxItems, maxWriters: 2,
            isItemError: { error in if case BrokerCallError.refused = error { true } else { false } }
        ) { batch in
            let answer: CompleteManyResponse = try await broker.callRetrying(
                "/v1/worker/complete", body: CompleteManyRequest(completions: batch), until: .now + retryFor)
            guard answer.results.count == batch.count else {
                throw BrokerCallError.refused(
                    status: 200, message: "the broker answered \(answer.results.count) results for \(batch.count) completions")
            }
            return answer.results
        }
    }

    func complete(_ item: CompleteManyItem) async throws -> CompleteManyResult { try await write(item) }
}
