import Prometheus

/// The broker's Prometheus metrics, served at `/metrics`. One registry per broker, so brokers in
/// one process (as in the tests) keep their counts apart.
final class BrokerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let webhooksDelivered: Counter
    let webhookAttemptsFailed: Counter
    let webhooksGivenUp: Counter
    let webhooksGone: Counter

    init() {
        let name = "spool_webhook_deliveries_total"
        let help = "Webhook delivery attempts by outcome: delivered, failed (will retry), gave_up (retries exhausted), gone (410)."
        webhooksDelivered = registry.makeCounter(name: name, labels: [("outcome", "delivered")], help: help)
        webhookAttemptsFailed = registry.makeCounter(name: name, labels: [("outcome", "failed")], help: help)
        webhooksGivenUp = registry.makeCounter(name: name, labels: [("outcome", "gave_up")], help: help)
        webhooksGone = registry.makeCounter(name: name, labels: [("outcome", "gone")], help: help)
    }

    /// The text exposition format.
    func render() -> String { registry.emitToString() }
}
