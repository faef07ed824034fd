import Foundation
import Hummingbird
import Logging
import NIOCore
import SpoolCore
import SpoolStore

/// What operators and their tools read: health, readiness, metrics, the API document, the workers
/// brokers have seen, the depth of every model's queue, and the last hour's ends per minute.
struct OperationsRoutes: Sendable {
    let store: Store
    let schema: SchemaReadiness
    let metrics: BrokerMetrics
    let monitor: QueueDepthMonitor
    let connections: BrokerConnections
    /// The key `/metrics` requires, if any (`--metrics-key`), as its hash.
    let metricsKeyHash: String?
    let history: ThroughputHistory
    /// The OpenAPI document of the whole HTTP API, as this broker takes it (with or without webhooks).
    let openAPIDocument: ByteBuffer

    init(
        store: Store, schema: SchemaReadiness, metrics: BrokerMetrics, monitor: QueueDepthMonitor, connections: BrokerConnections,
        metricsKey: String?, webhooks: Bool
    ) {
        self.store = store
        self.schema = schema
        self.metrics = metrics
        self.monitor = monitor
        self.connections = connections
        self.metricsKeyHash = metricsKey.map(APIKeyHash.of)
        self.history = ThroughputHistory(store: store)
        self.openAPIDocument = OpenAPIDocument.served(webhooks: webhooks)
    }

    /// Routes that need no key: probes and scrapers carry none.
    func registerPublic(on router: some RouterMethods<BrokerRequestContext>) {
        router.get("healthz") { _, _ in try JSONResponse.make(encoding: ["status": "ok"]) }
        router.get("readyz", use: ready)
        router.get("metrics", use: scrape)
        let document = openAPIDocument
        router.get("openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: document))
        }
    }

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        router.get("v1/workers", use: workers)
        router.get("v1/models", use: models)
        router.get("v1/stats/history") { _, context in JSONResponse.make(try await history.answer(logger: context.logger)) }
    }

    /// 200 when the database answers and the migrations are applied; 503 saying which is not so.
    @Sendable func ready(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        guard schema.isReady else {
            return try JSONResponse.make(encoding: ["status": "starting", "reason": "migrations are not applied yet"], status: .serviceUnavailable)
        }
        // Not a task group: a frozen database answers nothing, and the probe must not wait for it.
        let logger = context.logger
        let answered = try? await result(within: .seconds(2)) {
            try await store.client.healthCheck(.readiness, logger: logger)
            return true
        }
        guard answered == true else {
            return try JSONResponse.make(encoding: ["status": "unavailable", "reason": "the database is unreachable"], status: .serviceUnavailable)
        }
        return try JSONResponse.make(encoding: ["status": "ready"])
    }

    @Sendable func scrape(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        if let metricsKeyHash {
            let presented = request.headers[.authorization].flatMap { header -> String? in
                let parts = header.split(separator: " ", maxSplits: 1)
                return parts.count == 2 && parts[0].lowercased() == "bearer" ? String(parts[1]) : nil
            }
            // Compared as hashes, so the comparison's time says nothing about the key.
            guard let presented, APIKeyHash.of(presented) == metricsKeyHash else {
                throw SpoolError.unauthorized("/metrics requires this broker's metrics key: send 'Authorization: Bearer <metrics key>'.")
            }
        }
        metrics.openLongPolls.set(to: Double(connections.waiters.count))
        metrics.openStreams.set(to: Double(connections.watchers.count))
        if let takenAt = monitor.snapshot.takenAt {
            let age = ContinuousClock.now - takenAt
            metrics.depthAge.set(to: Double(age.components.seconds) + Double(age.components.attoseconds) / 1e18)
        }
        return Response(
            status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
    }

    /// The workers seen in the last day: id, host, models, last seen, waiting or not, jobs in hand, live.
    @Sendable func workers(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let workers = try await store.workers.list(on: store.client, logger: context.logger)
        return try JSONResponse.make(
            encoding:
                WorkersResponse(
                    workers: workers.map {
                        WorkerSummary(
                            id: $0.id, host: $0.host, models: $0.models, first_seen_at: $0.firstSeenAt, last_seen_at: $0.lastSeenAt,
                            waiting: $0.waiting, jobs_in_hand: $0.jobsInHand, live: $0.live)
                    }))
    }

    /// Every model with waiting or running jobs or live workers, from the depth snapshot.
    @Sendable func models(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        var snapshot = monitor.snapshot
        if snapshot.takenAt == nil {
            try await monitor.refresh()
            snapshot = monitor.snapshot
        }
        var rows: [String: ModelSummary] = [:]
        for depth in snapshot.depths {
            rows[depth.model] = ModelSummary(
                model: depth.model, messages_waiting: depth.waiting, messages_running: depth.running,
                oldest_waiting_seconds: depth.oldestWaitingSeconds,
                waiting_by_priority: Dictionary(uniqueKeysWithValues: depth.waitingByPriority.map { (String($0.key), $0.value) }),
                live_workers: snapshot.liveWorkers[depth.model] ?? 0)
        }
        for (model, live) in snapshot.liveWorkers where rows[model] == nil {
            rows[model] = ModelSummary(
                model: model, messages_waiting: 0, messages_running: 0, oldest_waiting_seconds: 0, waiting_by_priority: [:], live_workers: live)
        }
        return try JSONResponse.make(encoding: ModelsResponse(models: rows.values.sorted { $0.model < $1.model }))
    }
}
