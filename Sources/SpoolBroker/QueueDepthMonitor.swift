import Foundation
import Logging
import ServiceLifecycle
import SpoolCore
import SpoolStore
import Synchronization

/// Queue depth and live workers per model, read on an interval and kept in memory: what
/// `/metrics`, `/v1/models` and the "no live worker" warnings answer from, so a scrape or a status
/// poll never counts a million rows. Figures are at most `depthRefreshSeconds` old.
final class QueueDepthMonitor: Service, Sendable {
    struct Snapshot: Sendable {
        var depths: [ModelDepth] = []
        var liveWorkers: [String: Int] = [:]
        var takenAt: ContinuousClock.Instant?
    }

    let store: Store
    let metrics: BrokerMetrics
    let schema: SchemaReadiness
    let interval: Duration
    let logger: Logger
    private let latest = Mutex(Snapshot())

    init(store: Store, metrics: BrokerMetrics, schema: SchemaReadiness, interval: Duration, logger: Logger) {
        self.store = store
        self.metrics = metrics
        self.schema = schema
        self.interval = interval
        self.logger = logger
    }

    var snapshot: Snapshot { latest.withLock { $0 } }

    /// Live workers serving `model`; the first call before any snapshot takes one.
    func liveWorkers(for model: String) async throws -> Int {
        if latest.withLock({ $0.takenAt == nil }) { try await refresh() }
        return latest.withLock { $0.liveWorkers[model, default: 0] }
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard (try? await self.schema.wait()) != nil else { return }
            var failing = false
            while !Task.isCancelled {
                do {
                    try await self.refresh()
                    failing = false
                } catch {
                    if Task.isCancelled { return }
                    if !failing { self.logger.warning("cannot read queue depth; metrics keep the last figures", metadata: ["error": "\(error)"]) }
                    failing = true
                }
                try? await Task.sleep(for: self.interval)
            }
        }
    }

    func refresh() async throws {
        let depths = try await store.jobs.depthOfEveryModel(on: store.client, logger: logger)
        let live = try await store.workers.liveCounts(on: store.client, logger: logger)
        latest.withLock { $0 = Snapshot(depths: depths, liveWorkers: live, takenAt: .now) }
        metrics.updateDepth(depths, liveWorkers: live)
    }
}
