import Logging
import ServiceLifecycle
import SpoolStore

/// Prunes what the queue no longer needs: jobs finished longer ago than the retention period
/// (with their logs, the files their workers returned, and webhook deliveries no longer pending),
/// batches ended longer ago (with their input, output and error files), uploads left unfinished
/// for a day, expired idempotency keys, and workers gone for a day.
///
/// Jobs go in small batches through the `done_at` index, skipping locked rows, so pruning never
/// blocks the queue; every replica may run it at once.
struct RetentionService: MaintenanceService {
    let store: Store
    let configuration: BrokerConfiguration
    let schema: SchemaReadiness
    let logger: Logger

    static let batchSize = 1000
    /// Batches per pass: a backlog drains over several passes instead of in one long burst.
    static let batchesPerPass = 100

    static let passName = "pruning"

    func pass() async throws { try await prune() }

    func waitForNextPass() async throws { try await Task.sleep(for: .seconds(configuration.retentionIntervalSeconds)) }

    /// One pass; returns the jobs it pruned.
    @discardableResult
    func prune() async throws -> Int {
        let jobs = try await Self.inBatches(of: Self.batchSize) { size in
            try await store.jobs.pruneFinished(
                retentionSeconds: configuration.retentionSeconds, batchSize: size, on: store.client, logger: logger)
        }
        let keys = try await store.idempotencyKeys.prune(windowSeconds: configuration.idempotencyWindowSeconds, on: store.client, logger: logger)
        let workers = try await store.workers.prune(olderThanSeconds: 24 * 3600, on: store.client, logger: logger)
        let batches = try await Self.inBatches(of: 100) { size in
            try await store.batches.pruneEnded(retentionSeconds: configuration.retentionSeconds, batchSize: size, on: store.client, logger: logger)
        }
        // Small batches: an upload's pieces can add up to gigabytes.
        let uploads = try await Self.inBatches(of: 10) { size in
            try await store.files.pruneAbandonedUploads(
                olderThanSeconds: Self.abandonedUploadSeconds, idleSeconds: 2 * configuration.idleTimeoutSeconds, batchSize: size,
                on: store.client, logger: logger)
        }
        if jobs + keys + workers + batches + uploads > 0 {
            logger.info(
                "pruned",
                metadata: [
                    "jobs": "\(jobs)", "idempotency_keys": "\(keys)", "workers": "\(workers)", "batches": "\(batches)",
                    "abandoned_uploads": "\(uploads)",
                ])
        }
        return jobs
    }

    /// Prunes batch after batch of up to `size` until one comes back short, the pass's batches are
    /// used up or the broker stops; returns how many it pruned in all.
    static func inBatches(of size: Int, _ pruneBatch: (Int) async throws -> Int) async throws -> Int {
        var total = 0
        for _ in 0..<batchesPerPass {
            let pruned = try await pruneBatch(size)
            total += pruned
            if pruned < size || Task.isCancelled { break }
        }
        return total
    }

    /// How long an upload may stay unfinished before it is pruned (a file created for Together's
    /// PUT that never came, or an upload whose client vanished): a day.
    static let abandonedUploadSeconds: Double = 24 * 3600
}
