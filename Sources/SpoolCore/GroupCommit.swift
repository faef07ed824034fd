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
    /// One sender's items (one, or a request's many) and where their results go, in order.
    private typealias Waiter = (items: [Item], continuation: CheckedContinuation<[Result<Output, any Error>], Never>)

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
        try await writeMany([item])[0].get()
    }

    /// Writes a sender's items with whatever else is waiting, in as many writes as `maxBatch`
    /// needs; one result per item, in order, once all are committed (or refused).
    package func writeMany(_ items: [Item]) async -> [Result<Output, any Error>] {
        guard !items.isEmpty else { return [] }
        return await withCheckedContinuation { (continuation: CheckedContinuation<[Result<Output, any Error>], Never>) in
            let startWriting = state.withLock { state -> Bool in
                state.queue.append((items, continuation))
                guard state.writers < maxWriters else { return false }
                state.writers += 1
                return true
            }
            if startWriting { Task { await self.writeRounds() } }
        }
    }

    /// Writes rounds until the queue is empty: each round takes waiters while their items fit in
    /// `maxBatch` (a sender with more than that goes alone, in writes of `maxBatch`).
    private func writeRounds() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                guard !state.queue.isEmpty else {
                    state.writers -= 1
                    return []
                }
                var count = 0
                let taken = state.queue.prefix { waiter in
                    defer { count += waiter.items.count }
                    return count == 0 || count + waiter.items.count <= maxBatch
                }.count
                let batch = Array(state.queue.prefix(taken))
                state.queue.removeFirst(taken)
                return batch
            }
            guard !batch.isEmpty else { return }
            let items = batch.flatMap(\.items)
            var results: [Result<Output, any Error>] = []
            results.reserveCapacity(items.count)
            for start in stride(from: 0, to: items.count, by: maxBatch) {
                results += await write(Array(items[start..<min(start + maxBatch, items.count)]))
            }
            var offset = 0
            for waiter in batch {
                waiter.continuation.resume(returning: Array(results[offset..<offset + waiter.items.count]))
                offset += waiter.items.count
            }
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
