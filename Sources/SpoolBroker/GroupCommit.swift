import Foundation
import Logging
import SpoolCore
import SpoolStore
import PostgresNIO
import Synchronization

/// Writes concurrent requests of one kind in few statements (group commit).
///
/// An item that arrives while fewer than `maxWriters` statements run is written at once; those
/// that arrive while all run wait and go together in the next. At low load nothing waits; under
/// load, each statement carries up to `maxBatch` items. Nothing is acknowledged before its
/// statement committed.
final class GroupCommit<Item: Sendable, Output: Sendable>: Sendable {
    /// Writes a batch in one statement; one output per item, in order.
    typealias Write = @Sendable ([Item]) async throws -> [Output]
    private typealias Waiter = (item: Item, continuation: CheckedContinuation<Result<Output, any Error>, Never>)

    private struct State {
        var queue: [Waiter] = []
        var writers = 0
    }

    let maxBatch: Int
    let maxWriters: Int
    private let writeBatch: Write
    private let state = Mutex(State())

    init(maxBatch: Int, maxWriters: Int, write: @escaping Write) {
        self.maxBatch = maxBatch
        self.maxWriters = maxWriters
        self.writeBatch = write
    }

    /// Writes the item with whatever else is waiting; returns its output once committed.
    func write(_ item: Item) async throws -> Output {
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
