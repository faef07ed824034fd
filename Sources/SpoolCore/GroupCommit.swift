import Synchronization

/// Writes concurrent requests of one kind in few writes (group commit): the broker's statements,
/// the worker's completion requests.
///
/// An item that arrives while fewer than `maxWriters` writes are under way goes at once; those
/// that arrive while all are under way wait and go together in the next. At low load nothing
/// waits; under load, each write carries up to `maxBatch` items. No item is answered before its
/// write has.
///
/// A failing item fails only its sender: when a write of several items fails with an error that
/// `isItemError` blames on the items (bad input, not an outage), the batch is split in halves and
/// each written again, down to the item at fault, so its neighbours still commit.
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
    private let isItemError: @Sendable (any Error) -> Bool
    private let state = Mutex(State())

    /// - Parameter isItemError: whether a failed write may be the fault of one of its items, so
    ///   that splitting the batch isolates it; false for outages, where splitting only repeats them.
    package init(
        maxBatch: Int, maxWriters: Int, isItemError: @escaping @Sendable (any Error) -> Bool, write: @escaping Write
    ) {
        self.maxBatch = maxBatch
        self.maxWriters = maxWriters
        self.isItemError = isItemError
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
            let results = await write(batch.map(\.item))
            for (waiter, result) in zip(batch, results) { waiter.continuation.resume(returning: result) }
        }
    }

    /// One result per item: the batch's outputs, or, when it failed because of an item, the
    /// results of its halves written apart.
    private func write(_ items: [Item]) async -> [Result<Output, any Error>] {
        do {
            let outputs = try await writeBatch(items)
            guard outputs.count == items.count else {
                throw SpoolError.internalError("a batch write answered \(outputs.count) of \(items.count) items")
            }
            return outputs.map { .success($0) }
        } catch {
            guard items.count > 1, isItemError(error) else { return items.map { _ in .failure(error) } }
            let half = items.count / 2
            return await write(Array(items[..<half])) + write(Array(items[half...]))
        }
    }
}
