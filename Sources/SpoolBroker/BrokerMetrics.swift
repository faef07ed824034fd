import Prometheus
import SpoolCore
import SpoolStore
import Synchronization

/// The broker's Prometheus metrics, served at `/metrics`. One registry per broker, so brokers in
/// one process (as in the tests) keep their counts apart.
///
/// Depth gauges come from `QueueDepthMonitor`'s snapshot (every replica reports the same figures;
/// take `max` across replicas, not `sum`); event counters count what this replica did (`sum` them).
final class BrokerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()

    let webhooksDelivered: Counter
    let webhookAttemptsFailed: Counter
    let webhooksGivenUp: Counter
    let webhooksGone: Counter
    let openLongPolls: Gauge
    let openStreams: Gauge
    let depthAge: Gauge

    /// Models with series of their own: at most `maxModels` (plus models a live worker serves),
    /// so a client inventing model names cannot grow the registry without bound.
    private let labelled = Mutex<Set<String>>([])
    let maxModels: Int
    /// The label of every model past the cap.
    static let otherModels = "other"

    /// Per-model gauges the last snapshot set, so a model that drops out is set back to zero.
    private let reportedModels = Mutex<Set<String>>([])
    private let reportedTiers = Mutex<Set<TierKey>>([])

    /// Counters and histograms by name and labels: the registry's own lookup cost more than the
    /// event it counts (BENCHMARKS.md), so each is made once.
    private struct MetricKey: Hashable {
        let name: String
        let labels: [String]
        init(_ name: String, _ labels: [(String, String)]) {
            self.name = name
            self.labels = labels.flatMap { [$0.0, $0.1] }
        }
    }

    private let counters = Mutex<[MetricKey: Counter]>([:])
    private let histograms = Mutex<[MetricKey: ValueHistogram]>([:])

    private func counter(_ name: String, labels: [(String, String)], help: @autoclosure () -> String) -> Counter {
        let key = MetricKey(name, labels)
        if let cached = counters.withLock({ $0[key] }) { return cached }
        let made = registry.makeCounter(descriptor: Self.metric(name, help()), labels: labels)
        counters.withLock { $0[key] = made }
        return made
    }

    private func histogram(_ name: String, labels: [(String, String)], buckets: [Double], help: @autoclosure () -> String) -> ValueHistogram {
        let key = MetricKey(name, labels)
        if let cached = histograms.withLock({ $0[key] }) { return cached }
        let made = registry.makeValueHistogram(descriptor: Self.metric(name, help()), labels: labels, buckets: buckets)
        histograms.withLock { $0[key] = made }
        return made
    }

    private struct TierKey: Hashable {
        let model: String
        let priority: Int32
    }

    static let waitBuckets: [Double] = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]
    static let runBuckets: [Double] = [0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
    static let requestBuckets: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30]

    init(maxModels: Int = 500) {
        self.maxModels = maxModels
        let name = "spool_webhook_deliveries_total"
        let help = "Webhook delivery attempts by outcome: delivered, failed (will retry), gave_up (retries exhausted), gone (410)."
        webhooksDelivered = registry.makeCounter(descriptor: Self.metric(name, help), labels: [("outcome", "delivered")])
        webhookAttemptsFailed = registry.makeCounter(descriptor: Self.metric(name, help), labels: [("outcome", "failed")])
        webhooksGivenUp = registry.makeCounter(descriptor: Self.metric(name, help), labels: [("outcome", "gave_up")])
        webhooksGone = registry.makeCounter(descriptor: Self.metric(name, help), labels: [("outcome", "gone")])
        openLongPolls = registry.makeGauge(descriptor: Self.metric("spool_long_polls_open", "Lease requests waiting on this broker now."))
        openStreams = registry.makeGauge(descriptor: Self.metric("spool_status_streams_open", "Status streams open on this broker now."))
        depthAge = registry.makeGauge(
            descriptor: Self.metric(
                "spool_depth_snapshot_age_seconds", "Age of the queue depth figures when last scraped (refreshed on an interval)."))
    }

    /// The `model` label of a model: its name while it is among the first `maxModels` seen (or a
    /// live worker serves it), else `other`.
    func label(_ model: String) -> String {
        labelled.withLock { labelled in
            if labelled.contains(model) { return model }
            guard labelled.count < maxModels else { return Self.otherModels }
            labelled.insert(model)
            return model
        }
    }

    /// Gives models that live workers serve series of their own, cap or not: they are real.
    func labelServedModels(_ models: some Sequence<String>) {
        labelled.withLock { labelled in labelled.formUnion(models) }
    }

    /// Counts a job event of this replica: submitted, completed, failed, requeued, canceled.
    func count(_ event: String, model: String, by amount: Int = 1) {
        guard amount > 0 else { return }
        counter("spool_jobs_\(event)_total", labels: [("model", label(model))], help: "Jobs \(event) through this broker replica.")
            .increment(by: Int64(amount))
    }

    func recordQueueWait(model: String, seconds: Double) {
        histogram(
            "spool_job_queue_wait_seconds", labels: [("model", label(model))], buckets: Self.waitBuckets,
            help: "Seconds from submit to claim, per claim on this replica."
        ).record(seconds)
    }

    func recordRunTime(model: String, seconds: Double) {
        histogram(
            "spool_job_run_seconds", labels: [("model", label(model))], buckets: Self.runBuckets,
            help: "Seconds from claim to the end of the attempt, per attempt ended on this replica."
        ).record(seconds)
    }

    func recordRequest(route: String, method: String, status: Int, seconds: Double) {
        histogram(
            "spool_http_request_duration_seconds", labels: [("route", route), ("method", method), ("status", String(status))],
            buckets: Self.requestBuckets, help: "HTTP request durations by route."
        ).record(seconds)
    }

    /// Sets the depth gauges from a snapshot; models and tiers no longer in it go to zero. Models
    /// past the cap are summed under `other`.
    func updateDepth(_ snapshotDepths: [ModelDepth], liveWorkers snapshotWorkers: [String: Int]) {
        labelServedModels(snapshotWorkers.filter { $0.value > 0 }.keys)
        var byLabel: [String: ModelDepth] = [:]
        for depth in snapshotDepths {
            let label = label(depth.model)
            var merged = byLabel[label] ?? ModelDepth(model: label, waiting: 0, running: 0, waitingByPriority: [:], oldestWaitingSeconds: 0)
            merged.waiting += depth.waiting
            merged.running += depth.running
            merged.oldestWaitingSeconds = max(merged.oldestWaitingSeconds, depth.oldestWaitingSeconds)
            merged.waitingByPriority.merge(depth.waitingByPriority, uniquingKeysWith: +)
            byLabel[label] = merged
        }
        let depths = Array(byLabel.values)
        var liveWorkers: [String: Int] = [:]
        for (model, count) in snapshotWorkers { liveWorkers[label(model), default: 0] += count }
        let models = Set(depths.map(\.model)).union(liveWorkers.keys)
        var tiers = Set<TierKey>()
        for depth in depths {
            gauge("spool_jobs_waiting", depth.model).set(to: Double(depth.waiting))
            gauge("spool_jobs_running", depth.model).set(to: Double(depth.running))
            gauge("spool_oldest_waiting_seconds", depth.model).set(to: depth.oldestWaitingSeconds)
            for (priority, waiting) in depth.waitingByPriority {
                tiers.insert(TierKey(model: depth.model, priority: priority))
                tierGauge(depth.model, priority).set(to: Double(waiting))
            }
        }
        for (model, count) in liveWorkers { gauge("spool_workers_live", model).set(to: Double(count)) }
        let staleModels = reportedModels.withLock { reported in
            defer { reported = models }
            return reported.subtracting(models)
        }
        for model in staleModels {
            for name in ["spool_jobs_waiting", "spool_jobs_running", "spool_oldest_waiting_seconds"] { gauge(name, model).set(to: 0) }
        }
        for model in models where liveWorkers[model] == nil { gauge("spool_workers_live", model).set(to: 0) }
        let staleTiers = reportedTiers.withLock { reported in
            defer { reported = tiers }
            return reported.subtracting(tiers)
        }
        for tier in staleTiers { tierGauge(tier.model, tier.priority).set(to: 0) }
    }

    /// Help texts per gauge name: the registry insists every use of a name carries the same one.
    private static let help = [
        "spool_jobs_waiting": "Jobs waiting to be claimed.",
        "spool_jobs_running": "Jobs running now.",
        "spool_oldest_waiting_seconds": "Age of the oldest waiting job.",
        "spool_workers_live": "Live workers serving the model.",
    ]

    private func gauge(_ name: String, _ model: String) -> Gauge {
        registry.makeGauge(descriptor: Self.metric(name, Self.help[name] ?? ""), labels: [("model", model)])
    }

    private func tierGauge(_ model: String, _ priority: Int32) -> Gauge {
        registry.makeGauge(
            descriptor: Self.metric(
                "spool_jobs_waiting_by_priority", "Jobs waiting to be claimed, per priority tier: scale on the premium backlog alone."),
            labels: [("model", model), ("priority", String(priority))])
    }

    /// A metric's full name (units are part of Spool's names) and its help line.
    private static func metric(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// The text exposition format.
    func render() -> String { registry.emitToString() }
}
