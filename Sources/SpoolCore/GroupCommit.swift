import Synchronization

/// Writes concurrent requests of one kind in few writes (group commit): the broker's statements,
/// the worker's completion requests.
///
/// An item that arrives while fewer than `maxWriters` writes are under way goes at once; those
/// that arrive while all are under way wait and go together in the next. At low load nothing
/// waits; under load, each write carries up to `maxBatch` items. No item is answered before its
/// write has.
package final class GroupCommit<Item: Sendable, Output: Sendable>: Sendable {
    /// Writes a batch at once; one output per item, in order.
    package typealias Write = @Sendable ([Item]) async throws -> [Output]
    private typealias Waiter = (item: Item, continuation: CheckedContinuation<Result<Output, any Error>, Never>)

    private struct State {
        var queue: [Waiter] = []
        var writers = 0
    }

    package let maxBatch: Int
    package let maxWriters: Int
    private let writeBatch: Write
    private let state = Mutex(State())

    package init(maxBatch: Int, maxWriters: Int, write: @escaping Write) {
        self.maxBatch = maxBatch
        self.maxWriters = maxWriters
        self.writeBatch = write
    }

    /// Writes the item with whatever else is waiting; returns its output once committed.
    package func write(_ item: Item) async throws -> Output {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Output, any Error>, Never>) in
            let startWriting = state.withLock { state -> Bool in
                state.queue.append((item, continuation))
                guard state.writers < maxWriters else { return false }
                state.writers += 1
                return true
            }
            if startWriting { Task { await self.writeRounds() } }
        }
        return try result.get()
    }

    /// Writes rounds until the queue is empty.
    private func writeRounds() async {
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
                let outputs = try await writeBatch(batch.map(\.item))
                guard outputs.count == batch.count else { throw SpoolError.internalError("a batch write answered \(outputs.count) of \(batch.count) items") }
                for (waiter, output) in zip(batch, outputs) { waiter.continuation.resume(returning: .success(output)) }
            } catch {
                for waiter in batch { waiter.continuation.resume(returning: .failure(error)) }
            }
        }
    }
}
