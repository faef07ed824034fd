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
struct JobNotificationListener: Service {
    let store: SpoolStore
    let waiters: LeaseWaiters
    let watchers: JobWatchers
    let webhooks: Signal
    /// Raised when the API keys change (a NOTIFY on `spool_keys`), and whenever listening starts again.
    let keys: Signal
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
        waiters.close()
        watchers.close()
    }

    private func listen() async {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var failing = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await store.client.withConnection { connection in
                    try await connection.listen(on: JobsTable.pendingChannel) { pending in
                        try await connection.listen(on: JobsTable.watchedJobChannel) { watched in
                            try await connection.listen(on: WebhookDeliveriesTable.channel) { deliveries in
                              try await connection.listen(on: APIKeysTable.channel) { keyChanges in
                                if failing { logger.notice("listening for job notifications again") }
                                failing = false
                                backoff.reset()
                                // Anything that happened while we were not listening: look again.
                                wakeEveryWaitedForModel()
                                webhooks.raise()
                                keys.raise()
                                try await withThrowingTaskGroup(of: Void.self) { group in
                                    group.addTask {
                                        for try await _ in keyChanges { keys.raise() }
                                    }
                                    group.addTask {
                                        for try await notification in pending { waiters.notify(model: notification.payload) }
                                    }
                                    group.addTask {
                                        for try await notification in watched {
                                            if let id = UUID(uuidString: notification.payload) { watchers.notify(id) }
                                        }
                                    }
                                    group.addTask {
                                        for try await _ in deliveries { webhooks.raise() }
                                    }
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

    private func poll() async {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: pollInterval)
            let models = waiters.waitedForModels
            guard !models.isEmpty else { continue }
            do {
                for model in try await store.jobs.modelsWithPendingJobs(models, on: store.client, logger: logger) {
                    waiters.notify(model: model)
                }
            } catch {
                logger.debug("pending-job poll failed", metadata: ["error": "\(error)"])
            }
        }
    }

    private func wakeEveryWaitedForModel() {
        for model in waiters.waitedForModels { waiters.notify(model: model) }
    }
}
