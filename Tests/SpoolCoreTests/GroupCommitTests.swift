import SpoolCore
import Synchronization
import Testing

/// A failing item in a shared write fails only its sender.
@Suite struct GroupCommitTests {
    struct Poisoned: Error {}
    struct Outage: Error {}

    /// Items that arrive while a write is under way share the next write; one bad item among them
    /// is found by splitting, so every other item commits and only the bad one's sender hears of it.
    @Test func aBadItemFailsOnlyItsSender() async throws {
        let writes = Mutex<[[Int]]>([])
        let gate = Mutex(true)
        let commit = GroupCommit<Int, Int>(maxBatch: 100, maxWriters: 1, isItemError: { $0 is Poisoned }) { batch in
            // The first write waits a little so the rest pile up behind it.
            if gate.withLock({
                let first = $0
                $0 = false
                return first
            }) {
                try await Task.sleep(for: .milliseconds(100))
            }
            writes.withLock { $0.append(batch) }
            if batch.contains(13) { throw Poisoned() }
            return batch.map { $0 * 2 }
        }
        let results = await withTaskGroup(of: (Int, Result<Int, any Error>).self) { group in
            for item in 0..<40 {
                group.addTask { (item, await Result { try await commit.write(item) }) }
            }
            var results: [Int: Result<Int, any Error>] = [:]
            for await (item, result) in group { results[item] = result }
            return results
        }
        for (item, result) in results {
            if item == 13 {
                #expect(throws: Poisoned.self) { try result.get() }
            } else {
                #expect(try result.get() == item * 2, "item \(item)")
            }
        }
        let shared = writes.withLock { $0 }
        #expect(shared.contains { $0.count > 1 && $0.contains(13) }, "the bad item shared a write at first: \(shared)")
        #expect(shared.contains([13]), "and was written alone at last")
    }

    /// An outage is no item's fault: the batch fails as a whole, without a write per item.
    @Test func anOutageFailsTheBatchWithoutSplitting() async throws {
        let writes = Mutex(0)
        let commit = GroupCommit<Int, Int>(maxBatch: 100, maxWriters: 1, isItemError: { $0 is Poisoned }) { batch in
            writes.withLock { $0 += 1 }
            try await Task.sleep(for: .milliseconds(20))
            throw Outage()
        }
        await withTaskGroup(of: Void.self) { group in
            for item in 0..<20 {
                group.addTask { await #expect(throws: Outage.self) { try await commit.write(item) } }
            }
        }
        #expect(writes.withLock { $0 } < 20, "batches were not split into single writes")
    }

    /// A sender's many items (a worker's batched completes) share writes with other senders' items
    /// up to `maxBatch`, come back in order, and a bad one among them fails only itself.
    @Test func aSendersManyItemsComeBackInOrderInWritesOfAtMostMaxBatch() async throws {
        let writes = Mutex<[[Int]]>([])
        let commit = GroupCommit<Int, Int>(maxBatch: 10, maxWriters: 1, isItemError: { $0 is Poisoned }) { batch in
            try await Task.sleep(for: .milliseconds(10))
            writes.withLock { $0.append(batch) }
            if batch.contains(13) { throw Poisoned() }
            return batch.map { $0 * 2 }
        }
        async let single = Result { try await commit.write(100) }
        async let many = commit.writeMany(Array(0..<25))
        async let few = commit.writeMany([200, 201, 202])
        let (one, results, three) = await (single, many, few)
        #expect(try one.get() == 200)
        #expect(try three.map { try $0.get() } == [400, 402, 404])
        #expect(results.count == 25)
        for (item, result) in results.enumerated() {
            if item == 13 {
                #expect(throws: Poisoned.self) { try result.get() }
            } else {
                #expect(try result.get() == item * 2, "item \(item)")
            }
        }
        let sizes = writes.withLock { $0.map(\.count) }
        #expect(sizes.allSatisfy { $0 <= 10 }, "writes of \(sizes)")
        #expect(await commit.writeMany([]).isEmpty)
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
