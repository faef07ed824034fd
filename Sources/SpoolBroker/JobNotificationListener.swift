import Foundation
import Logging
import PostgresNIO
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Wakes this broker's waiting leases when jobs become pending, and its status streams when their
/// job changes, whichever replica made the change.
///
/// One connection LISTENs on both channels. NOTIFY is only a hint: it can be lost while the
/// connection reconnects and does not pass PgBouncer's transaction pooling, so a poll on an
/// interval also asks the database which waited-for models have pending jobs, and streams re-read
/// their job on an interval of their own.
struct JobNotificationListener: BrokerService {
    let store: Store
    /// Where the LISTEN connection comes from: the store's pool, or one that bypasses a transaction pooler.
    let listenClient: PostgresClient
    /// What it wakes: waiting leases, status streams, the webhook sender and the key watcher (whose
    /// signal is also raised whenever listening starts again).
    let connections: BrokerConnections
    let schema: SchemaReadiness
    let pollInterval: Duration
    let logger: Logger

    func run() async throws {
        // Both loops end when the service is cancelled or shuts down.
        await cancelWhenGracefulShutdown {
            guard (try? await schema.wait()) != nil else { return }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await listen() }
                group.addTask { await poll() }
            }
        }
        // Long-polls and streams in flight end now instead of holding the shutdown.
        connections.waiters.close()
        connections.watchers.close()
    }

    private func listen() async {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var failing = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await listenClient.withConnection { connection in
                    try await connection.listen(on: JobsTable.pendingChannel) { pending in
                        try await connection.listen(on: JobsTable.watchedJobChannel) { watched in
                            try await connection.listen(on: WebhookDeliveriesTable.channel) { deliveries in
                                try await connection.listen(on: APIKeysTable.channel) { keyChanges in
                                    if failing { logger.notice("listening for job notifications again") }
                                    failing = false
                                    backoff.reset()
                                    // Anything that happened while we were not listening: look again.
                                    connections.waiters.wakeAll()
                                    connections.webhooks.raise()
                                    connections.keys.raise()
                                    try await withThrowingTaskGroup(of: Void.self) { group in
                                        group.addTask {
                                            for try await _ in keyChanges { connections.keys.raise() }
                                        }
                                        group.addTask {
                                            for try await notification in pending { connections.waiters.notify(model: notification.payload) }
                                        }
                                        group.addTask {
                                            for try await notification in watched {
                                                if let id = UUID(uuidString: notification.payload) { connections.watchers.notify(id) }
                                            }
                                        }
                                        group.addTask {
                                            for try await _ in deliveries { connections.webhooks.raise() }
                                        }
                                        group.addTask { try await checkHealth(of: connection) }
                                        // Any sequence ending means the connection is gone: reconnect.
                                        try await group.next()
                                        group.cancelAll()
                                    }
                                }
                            }
                        }
                    }
                }
            } catch {
                if Task.isCancelled || Task.isShuttingDownGracefully { return }
                if !failing {
                    logger.warning("lost the LISTEN connection; waiting leases fall back to polling", metadata: ["error": "\(error)"])
                }
                failing = true
            }
            try? await Task.sleep(for: backoff.next())
        }
    }

    /// How often the LISTEN connection is asked a question, and how long it has to answer.
    static let healthInterval: Duration = .seconds(5)
    static let healthTimeout: Duration = .seconds(3)

    /// Returns (with an error) once the LISTEN connection stops answering. A connection that is
    /// half-open (its host gone without a reset) or whose server is frozen closes nothing and
    /// delivers nothing: without this the broker would wait on the fallback poll until restarted.
    private func checkHealth(of connection: PostgresConnection) async throws {
        while true {
            try await Task.sleep(for: Self.healthInterval)
            // Named, so operators (and scripts/chaos) can tell this connection in pg_stat_activity.
            let answered = try await result(within: Self.healthTimeout) {
                try await connection.healthCheck(.listener, logger: logger)
                return true
            }
            guard answered == true else {
                logger.warning("the LISTEN connection stopped answering; reconnecting", metadata: ["timeout": "\(Self.healthTimeout)"])
                // Closed so that nothing else uses it: its pending statements fail, the pool drops it.
                try? await connection.close()
                throw ListenerStalled()
            }
        }
    }

    struct ListenerStalled: Error {}

    private func poll() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: pollInterval)
            let models = connections.waiters.waitedForModels
            guard !models.isEmpty else { continue }
            do {
                for model in try await store.jobs.modelsWithPendingJobs(models, on: store.client, logger: logger) {
                    connections.waiters.notify(model: model)
                }
            } catch {
                logger.debug("pending-job poll failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
