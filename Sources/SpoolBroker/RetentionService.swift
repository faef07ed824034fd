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
        var jobs = 0
        for _ in 0..<Self.batchesPerPass {
            let pruned = try await store.jobs.pruneFinished(
                retentionSeconds: configuration.retentionSeconds, batchSize: Self.batchSize, on: store.client, logger: logger)
            jobs += pruned
            if pruned < Self.batchSize || Task.isCancelled { break }
        }
        let keys = try await store.idempotencyKeys.prune(windowSeconds: configuration.idempotencyWindowSeconds, on: store.client, logger: logger)
        let workers = try await store.workers.prune(olderThanSeconds: 24 * 3600, on: store.client, logger: logger)
        var batches = 0
        for _ in 0..<Self.batchesPerPass {
            let pruned = try await store.batches.pruneEnded(
                retentionSeconds: configuration.retentionSeconds, batchSize: 100, on: store.client, logger: logger)
            batches += pruned
            if pruned < 100 || Task.isCancelled { break }
        }
        // Small batches: an upload's pieces can add up to gigabytes.
        var uploads = 0
        for _ in 0..<Self.batchesPerPass {
            let pruned = try await store.files.pruneAbandonedUploads(
                olderThanSeconds: Self.abandonedUploadSeconds, idleSeconds: 2 * configuration.idleTimeoutSeconds, batchSize: 10,
                on: store.client, logger: logger)
            uploads += pruned
            if pruned < 10 || Task.isCancelled { break }
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

    /// How long an upload may stay unfinished before it is pruned (a file created for Together's
    /// PUT that never came, or an upload whose client vanished): a day.
    static let abandonedUploadSeconds: Double = 24 * 3600
}
