import Foundation
import Logging
import SpoolStore
import Synchronization

/// Completes concurrent completions in few statements (group commit).
///
/// A completion that arrives while fewer than `maxWriters` statements run is written at once;
/// those that arrive while all run wait and go together in the next. At low load nothing waits;
/// under load, each statement carries up to `maxBatch` completions. Nothing is acknowledged before
/// its statement committed.
final class CompletionBatcher: Sendable {
    private typealias Waiter = (completion: Completion, continuation: CheckedContinuation<Result<Completed?, any Error>, Never>)

    private struct State {
        var queue: [Waiter] = []
        var writers = 0
    }

    let store: SpoolStore
    let logger: Logger
    let maxBatch: Int
    let maxWriters: Int
    private let state = Mutex(State())

    init(store: SpoolStore, logger: Logger, maxBatch: Int = 500, maxWriters: Int = 4) {
        self.store = store
        self.logger = logger
        self.maxBatch = maxBatch
        self.maxWriters = maxWriters
    }

    /// Completes the job if its lease holds; nil when the batch left it for `finish` to settle
    /// (a lease that moved on, a retried complete, an unknown id).
    func complete(_ completion: Completion) async throws -> Completed? {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Completed?, any Error>, Never>) in
            let startWriting = state.withLock { state -> Bool in
                state.queue.append((completion, continuation))
                guard state.writers < maxWriters else { return false }
                state.writers += 1
                return true
            }
            if startWriting { Task { await self.write() } }
        }
        return try result.get()
    }

    /// Completes many at once, joining the same rounds as single completions.
    func complete(_ completions: [Completion]) async throws -> [Completed?] {
        try await withThrowingTaskGroup(of: (Int, Completed?).self) { group in
            for (index, completion) in completions.enumerated() {
                group.addTask { (index, try await self.complete(completion)) }
            }
            var results = [Completed?](repeating: nil, count: completions.count)
            for try await (index, completed) in group { results[index] = completed }
            return results
        }
    }

    /// Writes rounds until the queue is empty.
    private func write() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                guard !state.queue.isEmpty else {
                    state.writers -= 1
                    return []
                }
                let batch = Array(state.queue.prefix(maxBatch))
                state.queue.removeFirst(batch.count)
                return batch
            }
            guard !batch.isEmpty else { return }
            do {
                let completed = try await store.jobs.completeMany(batch.map(\.completion), on: store.client, logger: logger)
                let byID = Dictionary(completed.map { ($0.requestID, $0) }, uniquingKeysWith: { first, _ in first })
                for waiter in batch { waiter.continuation.resume(returning: .success(byID[waiter.completion.requestID])) }
            } catch {
                for waiter in batch { waiter.continuation.resume(returning: .failure(error)) }
            }
        }
    }
}
