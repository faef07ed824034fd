import Foundation
import Logging
import Synchronization
import SpoolStore

/// A pending job's place in its queue, and when it should start.
struct QueuePosition: Sendable, Equatable {
    /// Jobs a claim takes before this one (0: next).
    var position: Int
    /// Position over the model's recent throughput; nil when nothing finished lately.
    var estimatedWaitSeconds: Double?
}

/// Queue positions that stay cheap on a deep queue.
///
/// With fewer than `exactLimit` jobs ahead, the position is counted live and exact. Deeper, it adds
/// the cached counts of the buckets ahead (one pass over the model's pending index, renewed in the
/// background once older than `snapshotSeconds`) to a live count inside the job's own bucket: exact
/// as of the snapshot, a second or two ago. Throughput for the
/// estimated wait is jobs finished per second over the last minute, cached per model.
final class QueuePositions: Sendable {
    private struct Snapshot {
        var buckets: [PendingBucket]
        var takenAt: ContinuousClock.Instant
    }

    let store: SpoolStore
    let exactLimit: Int
    let snapshotSeconds: Double
    static let throughputWindowSeconds: Double = 60
    private let snapshots = Mutex<[String: Snapshot]>([:])
    private let throughput = Mutex<(perModel: [String: Int], takenAt: ContinuousClock.Instant?)>(([:], nil))
    /// One refresh per model at a time: concurrent status calls wait for it rather than repeat it.
    private let refreshing = Mutex<[String: Task<[PendingBucket], any Error>]>([:])

    init(store: SpoolStore, exactLimit: Int = 2048, snapshotSeconds: Double = 2) {
        self.store = store
        self.exactLimit = exactLimit
        self.snapshotSeconds = snapshotSeconds
    }

    func position(of job: JobRecord, logger: Logger) async throws -> QueuePosition {
        let bucket = JobsTable.positionBucket(of: job.fairTag)
        let buckets = try await buckets(model: job.model, logger: logger)
        // Claim order: higher priority first, then lower fair tags (then ids, inside a bucket).
        let aheadInEarlierBuckets = buckets.lazy
            .filter { $0.priority > job.priority || ($0.priority == job.priority && $0.bucket < bucket) }
            .reduce(0) { $0 + $1.count }
        let position: Int
        if aheadInEarlierBuckets < exactLimit {
            position = try await store.jobs.pendingAhead(
                model: job.model, priority: job.priority, fairTag: job.fairTag, id: job.id, on: store.client, logger: logger)
        } else {
            position = try await aheadInEarlierBuckets + store.jobs.pendingAheadInBucket(
                model: job.model, priority: job.priority, fairTag: job.fairTag, id: job.id, on: store.client, logger: logger)
        }
        let finished = try await recentlyFinished(model: job.model, logger: logger)
        let rate = Double(finished) / Self.throughputWindowSeconds
        return QueuePosition(position: position, estimatedWaitSeconds: rate > 0 ? Double(position + 1) / rate : nil)
    }

    /// The model's bucket counts. A stale snapshot is answered at once while a fresh one is read
    /// in the background; only a model's first call waits for the pass over its index.
    private func buckets(model: String, logger: Logger) async throws -> [PendingBucket] {
        let snapshot = snapshots.withLock { $0[model] }
        if let snapshot, ContinuousClock.now - snapshot.takenAt < .seconds(snapshotSeconds) {
            return snapshot.buckets
        }
        let refresh = refresh(model: model, logger: logger)
        if let snapshot { return snapshot.buckets }
        return try await refresh.value
    }

    private func refresh(model: String, logger: Logger) -> Task<[PendingBucket], any Error> {
        refreshing.withLock { tasks -> Task<[PendingBucket], any Error> in
            if let running = tasks[model] { return running }
            let task = Task { [store] in
                defer { _ = refreshing.withLock { $0.removeValue(forKey: model) } }
                let buckets = try await store.jobs.pendingBuckets(model: model, on: store.client, logger: logger)
                snapshots.withLock { $0[model] = Snapshot(buckets: buckets, takenAt: .now) }
                return buckets
            }
            tasks[model] = task
            return task
        }
    }

    private func recentlyFinished(model: String, logger: Logger) async throws -> Int {
        let cached = throughput.withLock { $0 }
        if let takenAt = cached.takenAt, ContinuousClock.now - takenAt < .seconds(10) {
            return cached.perModel[model] ?? 0
        }
        let counts = try await store.jobs.recentlyFinished(
            seconds: Self.throughputWindowSeconds, on: store.client, logger: logger)
        throughput.withLock { $0 = (counts, .now) }
        return counts[model] ?? 0
    }
}
