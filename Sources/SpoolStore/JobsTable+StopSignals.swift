import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// An attempt a worker is told to stop.
package struct StopSignal: Sendable, Equatable {
    package var requestID: UUID
    package var leaseToken: UUID
}

// Stops told to a worker on its own channel (RunPod's job-stop) rather than at a heartbeat.
extension JobsTable {
    /// The running jobs of `model` that `workerID` holds and that were asked to stop (canceled, or
    /// past their maximum run time). Their leases end now, so the lease sweep ends each as its stop
    /// says, and no later read tells the same stop twice.
    package func takeStopSignals(
        model: String, workerID: String, on database: some PostgresQueryable, logger: Logger
    ) async throws -> [StopSignal] {
        // Running jobs are few (one per busy GPU slot); their partial index bounds this scan.
        let rows = try await database.run(
            """
            UPDATE jobs SET lease_expires_at = now()
            WHERE status = 'running' AND model = \(model) AND worker_id = \(workerID)
              AND stop_reason IS NOT NULL AND lease_expires_at > now()
            RETURNING request_id, lease_token
            """, logger: logger)
        var signals: [StopSignal] = []
        for try await (requestID, token) in rows.decode((UUID, UUID).self) { signals.append(StopSignal(requestID: requestID, leaseToken: token)) }
        return signals
    }

    /// Whether the attempt holding `leaseToken` is the one that ended the job (a finished job keeps
    /// its last token): a late write from it is stale but harmless, not another attempt's.
    package func endedBy(requestID: UUID, leaseToken: UUID, on database: some PostgresQueryable, logger: Logger) async throws -> Bool {
        let rows = try await database.run(
            """
            SELECT 1 FROM jobs
            WHERE request_id = \(requestID) AND lease_token = \(leaseToken) AND status IN ('done', 'failed', 'canceled')
            """, logger: logger)
        return try await rows.collect().first != nil
    }
}
