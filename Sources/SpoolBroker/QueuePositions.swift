import Foundation
import Logging
import SpoolStore
import Synchronization

/// A pending job's place in its queue, and when it should start.
struct QueuePosition: Sendable, Equatable {
    /// Jobs a claim takes before this one (0: next).
    var position: Int
    /// When it should start, from what the model's workers can do now (``QueuePositions/estimatedWait``);
    /// nil while no worker serves the model or none of its attempts ended lately.
    var estimatedWaitSeconds: Double?
}

/// Queue positions that stay cheap on a deep queue.
///
/// With fewer than `exactLimit` jobs ahead, the position is counted live and exact. Deeper, it adds
/// the cached counts of the buckets ahead (one pass over the model's pending index, renewed in the
/// background once older than `snapshotSeconds`) to a live count inside the job's own bucket: exact
/// as of the snapshot, a second or two ago. The estimated wait comes from the slots serving the model
/// now and its attempts' mean run time over the last five minutes (cached one and two seconds).
final class QueuePositions: Sendable {
    private struct Snapshot {
        var buckets: [PendingBucket]
        var takenAt: ContinuousClock.Instant
    }

    let store: Store
    let exactLimit: Int
    let snapshotSeconds: Double
    /// The window whose ended attempts give a model's mean run time.
    static let runWindowSeconds: Double = 300
    private let snapshots = Mutex<[String: Snapshot]>([:])
    private let meanRuns = Mutex<(perModel: [String: Double], takenAt: ContinuousClock.Instant?)>(([:], nil))
    private let runningJobs = Mutex<[String: (count: Int, takenAt: ContinuousClock.Instant)]>([:])
    /// One refresh per model at a time: concurrent status calls wait for it rather than repeat it.
    private let refreshing = Mutex<[String: Task<[PendingBucket], any Error>]>([:])

    init(store: Store, exactLimit: Int = 2048, snapshotSeconds: Double = 2) {
        self.store = store
        self.exactLimit = exactLimit
        self.snapshotSeconds = snapshotSeconds
    }

    /// The job's position, and its estimated wait given the model's `liveWorkers`.
    func position(of job: JobRecord, liveWorkers: Int, logger: Logger) async throws -> QueuePosition {
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
            position =
                try await aheadInEarlierBuckets
                + store.jobs.pendingAheadInBucket(
                    model: job.model, priority: job.priority, fairTag: job.fairTag, id: job.id, on: store.client, logger: logger)
        }
        let running = try await running(model: job.model, logger: logger)
        // The live-worker count is a snapshot up to seconds old; a running job says a worker is there.
        guard liveWorkers > 0 || running > 0 else { return QueuePosition(position: position, estimatedWaitSeconds: nil) }
        let meanRun = try await meanRunSeconds(model: job.model, logger: logger)
        return QueuePosition(
            position: position,
            estimatedWaitSeconds: Self.estimatedWait(position: position, running: running, liveWorkers: liveWorkers, meanRunSeconds: meanRun))
    }

    /// When the job `position` places from the front starts: the slot releases it waits for, at
    /// the pace the model's slots finish attempts.
    ///
    /// The slots are the jobs running now (a model with jobs waiting keeps its workers full), at
    /// least one per live worker (none of either: no estimate); a job behind `position` others
    /// waits for `position + 1` releases less the free slots. Running jobs are half done on average, so releases come every
    /// `meanRun / slots` seconds and the first after half of that. Nil while nothing says how long
    /// an attempt takes (no attempt ended in the window: a cold start), rather than a guess.
    static func estimatedWait(position: Int, running: Int, liveWorkers: Int, meanRunSeconds: Double?) -> Double? {
        let slots = max(running, liveWorkers)
        guard slots > 0, let meanRunSeconds else { return nil }
        let releases = position + 1 - (slots - running)
        guard releases > 0 else { return 0 }
        return (Double(releases) - 0.5) * meanRunSeconds / Double(slots)
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

    /// The model's mean run time, from one read for every model renewed at most every 2 s (at most
    /// 100,000 rows, and only while waiting jobs' statuses are read).
    private func meanRunSeconds(model: String, logger: Logger) async throws -> Double? {
        let cached = meanRuns.withLock { $0 }
        if let takenAt = cached.takenAt, ContinuousClock.now - takenAt < .seconds(2) { return cached.perModel[model] }
        let perModel = try await store.jobs.meanRunSeconds(within: Self.runWindowSeconds, on: store.client, logger: logger)
        meanRuns.withLock { $0 = (perModel, .now) }
        return perModel[model]
    }

    /// The model's running jobs, counted at most once a second: every waiting job's status asks.
    private func running(model: String, logger: Logger) async throws -> Int {
        if let cached = runningJobs.withLock({ $0[model] }), ContinuousClock.now - cached.takenAt < .seconds(1) {
            return cached.count
        }
        let count = try await store.jobs.running(model: model, on: store.client, logger: logger)
        runningJobs.withLock { cache in
            // Models come and go: the cache holds what was asked within the last minute.
            if cache.count > 10_000 { cache = cache.filter { ContinuousClock.now - $0.value.takenAt < .seconds(60) } }
            cache[model] = (count, .now)
        }
        return count
    }
}
