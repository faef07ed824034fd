import Foundation
import Synchronization

/// Sends completions to the broker in batches (group commit): a completion goes at once while
/// fewer than `maxInFlight` requests are out; those that finish while all are out go together in
/// the next. A worker running many short jobs reports them in a few requests instead of one each.
final class CompletionSender: Sendable {
    private typealias Waiter = (item: CompleteBatchItem, continuation: CheckedContinuation<Result<CompleteBatchResult, any Error>, Never>)

    private struct State {
        var queue: [Waiter] = []
        var senders = 0
    }

    let broker: BrokerConnection
    /// How long a batch is retried through broker outages before its jobs are left to their leases.
    let retryFor: Duration
    let maxInFlight: Int
    private let state = Mutex(State())

    init(broker: BrokerConnection, retryFor: Duration, maxInFlight: Int = 2) {
        self.broker = broker
        self.retryFor = retryFor
        self.maxInFlight = maxInFlight
    }

    func complete(_ item: CompleteBatchItem) async throws -> CompleteBatchResult {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<CompleteBatchResult, any Error>, Never>) in
            let start = state.withLock { state -> Bool in
                state.queue.append((item, continuation))
                guard state.senders < maxInFlight else { return false }
                state.senders += 1
                return true
            }
            if start { Task { await self.send() } }
        }
        return try result.get()
    }

    private func send() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                guard !state.queue.isEmpty else {
                    state.senders -= 1
                    return []
                }
                let batch = Array(state.queue.prefix(CompleteBatchRequest.maxItems))
                state.queue.removeFirst(batch.count)
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                let answer: CompleteBatchResponse = try await broker.callRetrying(
                    "/v1/worker/complete", body: CompleteBatchRequest(completions: batch.map(\.item)), until: .now + retryFor)
                guard answer.results.count == batch.count else {
                    throw BrokerCallError.refused(status: 200, message: "the broker answered \(answer.results.count) results for \(batch.count) completions")
                }
                for (waiter, result) in zip(batch, answer.results) { waiter.continuation.resume(returning: .success(result)) }
            } catch {
                for waiter in batch { waiter.continuation.resume(returning: .failure(error)) }
            }
        }
    }
}
