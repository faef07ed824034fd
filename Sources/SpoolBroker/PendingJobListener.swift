import Logging
import PostgresNIO
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Wakes this broker's waiting leases when jobs become pending, on any replica.
///
/// One connection LISTENs on the pending channel. NOTIFY is only a hint: it can be lost while
/// the connection reconnects and does not pass PgBouncer's transaction pooling, so a poll on an
/// interval also asks the database which waited-for models have pending jobs.
struct PendingJobListener: Service {
    let store: SpoolStore
    let waiters: LeaseWaiters
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
        // Long-polls in flight answer now instead of holding the shutdown for up to their wait.
        waiters.close()
    }

    private func listen() async {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var failing = false
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            do {
                try await store.client.withConnection { connection in
                    try await connection.listen(on: JobsTable.pendingChannel) { notifications in
                        if failing { logger.notice("listening for pending jobs again") }
                        failing = false
                        backoff.reset()
                        // Anything submitted while we were not listening is found by the poll below.
                        wakeEveryWaitedForModel()
                        for try await notification in notifications {
                            waiters.notify(model: notification.payload)
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
