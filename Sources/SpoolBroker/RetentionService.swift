import Logging
import ServiceLifecycle
import SpoolStore

/// Prunes what the queue no longer needs: jobs finished longer ago than the retention period
/// (with their logs and webhook deliveries), expired idempotency keys, and workers gone for a day.
///
/// Jobs go in small batches through the `done_at` index, skipping locked rows, so pruning never
/// blocks the queue; every replica may run it at once.
struct RetentionService: Service {
    let store: SpoolStore
    let configuration: BrokerConfiguration
    let schema: SchemaReadiness
    let logger: Logger

    static let batchSize = 1000
    /// Batches per pass: a backlog drains over several passes instead of in one long burst.
    static let batchesPerPass = 100

    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard (try? await schema.wait()) != nil else { return }
            await MaintenanceLoop(name: "pruning", logger: logger).run(
                pass: { try await prune() }, wait: { try await Task.sleep(for: .seconds(configuration.retentionIntervalSeconds)) })
        }
    }

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
        if jobs + keys + workers > 0 {
            logger.info("pruned", metadata: ["jobs": "\(jobs)", "idempotency_keys": "\(keys)", "workers": "\(workers)"])
        }
        return jobs
    }
}
