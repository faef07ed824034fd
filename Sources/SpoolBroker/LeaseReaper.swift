import Logging
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Returns jobs whose lease expired to the queue, stops jobs past their maximum run time, and fails
/// jobs that did not start before their start timeout.
///
/// Every replica runs it; the statements lock what they change and skip what another replica
/// holds, so no job is requeued twice.
struct LeaseReaper: MaintenanceService {
    let store: Store
    let configuration: BrokerConfiguration
    let schema: SchemaReadiness
    let metrics: BrokerMetrics
    let logger: Logger

    static let passName = "lease maintenance"

    func waitForNextPass() async throws { try await Task.sleep(for: .seconds(configuration.maintenanceIntervalSeconds)) }

    /// One pass: fail jobs that missed their start deadline, stop jobs past their run deadline,
    /// then settle every expired lease.
    func pass() async throws {
        for (model, count) in try await store.jobs.failJobsPastStartDeadline(on: store.client, logger: logger) {
            logger.notice("failed jobs that did not start before their start timeout", metadata: ["model": "\(model)", "count": "\(count)"])
            metrics.count("failed", model: model, by: count)
        }
        let stopped = try await store.jobs.stopJobsPastRunDeadline(
            graceSeconds: configuration.stopGraceSeconds, on: store.client, logger: logger)
        if stopped > 0 { logger.notice("asked jobs past the maximum run time to stop", metadata: ["count": "\(stopped)"]) }
        let batchSize = 500
        // A backlog (a replica died holding thousands of leases) is worked through in batches, but
        // for a few seconds per pass at most: start deadlines and run deadlines are not held up behind it.
        let passEnds = ContinuousClock.now + .seconds(3)
        while true {
            let expired = try await store.jobs.requeueExpiredLeases(
                retryLimit: configuration.retryLimit, batchSize: batchSize, on: store.client, logger: logger)
            for job in expired {
                metrics.count(Self.event(job.status), model: job.model)
                logger.notice(
                    "lease expired",
                    metadata: [
                        "request_id": "\(job.requestID)", "model": "\(job.model)", "now": "\(job.status.rawValue)",
                        "retries": "\(job.retries)",
                    ])
            }
            if expired.count < batchSize || ContinuousClock.now > passEnds { break }
        }
    }

    /// The metrics event of an ended attempt's new status.
    static func event(_ status: JobStatus) -> String {
        switch status {
        case .pending: "requeued"
        case .done: "completed"
        case .failed: "failed"
        case .canceled: "canceled"
        case .running: "claimed"
        }
    }
}
