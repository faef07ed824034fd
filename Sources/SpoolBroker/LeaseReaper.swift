import Logging
import ServiceLifecycle
import SpoolStore

/// Returns jobs whose lease expired to the queue, stops jobs past their maximum run time, and fails
/// jobs that did not start before their start timeout.
///
/// Every replica runs it; the statements lock what they change and skip what another replica
/// holds, so no job is requeued twice. Forgotten idempotency keys are pruned here too.
struct LeaseReaper: Service {
    let store: SpoolStore
    let configuration: BrokerConfiguration
    let schema: SchemaReadiness
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard (try? await schema.wait()) != nil else { return }
            await loop()
        }
    }

    private func loop() async {
        let interval = Duration.seconds(configuration.maintenanceIntervalSeconds)
        var lastPrune = ContinuousClock.now - .seconds(3600)
        var failing = false
        do {
            while !Task.isCancelled {
                do {
                    try await sweep()
                    if ContinuousClock.now - lastPrune >= .seconds(600) {
                        let pruned = try await store.idempotencyKeys.prune(
                            windowSeconds: configuration.idempotencyWindowSeconds, on: store.client, logger: logger)
                        if pruned > 0 { logger.info("pruned expired idempotency keys", metadata: ["count": "\(pruned)"]) }
                        lastPrune = .now
                    }
                    if failing { logger.notice("lease maintenance recovered") }
                    failing = false
                } catch {
                    if Task.isCancelled { return }
                    if !failing { logger.error("lease maintenance failed; retrying", metadata: ["error": "\(error)"]) }
                    failing = true
                }
                try await Task.sleep(for: interval)
            }
        } catch {
            // Cancelled while sleeping: the broker is stopping.
        }
    }

    /// One pass: fail jobs that missed their start deadline, stop jobs past their run deadline,
    /// then settle every expired lease.
    func sweep() async throws {
        let late = try await store.jobs.failJobsPastStartDeadline(on: store.client, logger: logger)
        if late > 0 { logger.notice("failed jobs that did not start before their start timeout", metadata: ["count": "\(late)"]) }
        let stopped = try await store.jobs.stopJobsPastRunDeadline(
            graceSeconds: configuration.stopGraceSeconds, on: store.client, logger: logger)
        if stopped > 0 { logger.notice("asked jobs past the maximum run time to stop", metadata: ["count": "\(stopped)"]) }
        let batchSize = 500
        while true {
            let expired = try await store.jobs.requeueExpiredLeases(
                retryLimit: configuration.retryLimit, batchSize: batchSize, on: store.client, logger: logger)
            for job in expired {
                logger.notice(
                    "lease expired",
                    metadata: [
                        "request_id": "\(job.requestID)", "model": "\(job.model)", "now": "\(job.status.rawValue)",
                        "retries": "\(job.retries)",
                    ])
            }
            if expired.count < batchSize { break }
        }
    }
}
