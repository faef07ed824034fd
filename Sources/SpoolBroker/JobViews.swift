import Foundation
import Logging
import SpoolCore
import SpoolStore

/// A job with what a status answer adds to the stored row: its queue position while pending, and
/// its log lines when asked for.
struct JobView: Sendable {
    var record: JobRecord
    var position: QueuePosition?
    var logs: [JobLogRecord]?
    var webhook: WebhookStatus?
    /// Why the job may wait longer than expected (Together's `warnings`).
    var warnings: [String] = []
}

/// Reads jobs for status answers and streams, in Together's shape or fal's.
struct JobViews: Sendable {
    let store: Store
    let positions: QueuePositions
    let monitor: QueueDepthMonitor
    /// Most log lines a status answer carries: the newest ones.
    static let maxLogLines = 1000

    /// The job's view, if `caller` may read it: another tenant's job is nil, exactly as an unknown one.
    /// Without `withPosition`, a pending job's queue position is left for `addingPosition`: a
    /// conditional read that turns out unchanged never counts the jobs ahead.
    func load(
        model: String, requestID: UUID, withLogs: Bool, caller: Caller, withPosition: Bool = true, logger: Logger
    ) async throws -> JobView? {
        guard
            let record = try await store.jobs.find(
                model: model, requestID: requestID, tenant: caller.readableTenant, on: store.client, logger: logger)
        else {
            return nil
        }
        var view = JobView(record: record)
        if record.status == .pending {
            let liveWorkers = try await monitor.liveWorkers(for: record.model)
            if withPosition { view.position = try await positions.position(of: record, liveWorkers: liveWorkers, logger: logger) }
            if liveWorkers == 0 {
                view.warnings.append(
                    "No live worker serves model '\(record.model)': the job waits until one connects. Live workers leased or heartbeated in the last \(Int(WorkersTable.liveSeconds)) s; GET /v1/workers lists the workers brokers have seen."
                )
            }
        }
        if let url = record.webhookURL {
            view.webhook = WebhookStatus(webhook_id: nil, url: url, state: "waiting")
            if let delivery = try await store.webhookDeliveries.find(jobID: record.id, on: store.client, logger: logger) {
                view.webhook = WebhookStatus(
                    webhook_id: delivery.webhookID, url: delivery.url, state: delivery.state, attempts: delivery.attempts,
                    last_status_code: delivery.lastStatusCode, last_error: delivery.lastError, last_attempt_at: delivery.lastAttemptAt,
                    next_attempt_at: delivery.nextAttemptAt)
            }
        }
        if withLogs {
            view.logs = try await store.jobLogs.list(
                requestID: requestID, newest: Self.maxLogLines, on: store.client, logger: logger)
        }
        return view
    }

    /// The view with its queue position, if it is a pending job's and has none yet.
    func addingPosition(to view: JobView, logger: Logger) async throws -> JobView {
        guard view.record.status == .pending, view.position == nil else { return view }
        var view = view
        let liveWorkers = try await monitor.liveWorkers(for: view.record.model)
        view.position = try await positions.position(of: view.record, liveWorkers: liveWorkers, logger: logger)
        return view
    }

    static func together(_ view: JobView) -> JobStatusResponse {
        let job = view.record
        return JobStatusResponse(
            model: job.model, request_id: job.requestID.uuidString.lowercased(), status: job.status, priority: job.priority,
            info: job.info, inputs: job.payload, outputs: job.outputs, error: job.error, error_type: job.errorType,
            retries: job.retries, created_at: job.createdAt, claimed_at: job.claimedAt, done_at: job.doneAt, warnings: view.warnings,
            queue_position: view.position?.position, estimated_wait_seconds: view.position?.estimatedWaitSeconds,
            logs: view.logs?.map { JobLogLine(message: $0.message, level: $0.level, source: $0.source, timestamp: $0.loggedAt) },
            webhook: view.webhook)
    }

    static func fal(_ view: JobView, baseURL: String) -> FalStatusResponse {
        let job = view.record
        let id = job.requestID.uuidString.lowercased()
        let logs = view.logs?.map { FalLogLine(message: $0.message, level: $0.level, source: $0.source, timestamp: $0.loggedAt) }
        switch job.status {
        case .pending:
            return FalStatusResponse(
                status: .inQueue, request_id: id, response_url: baseURL, queue_position: view.position?.position ?? 0,
                estimated_wait_seconds: view.position?.estimatedWaitSeconds, logs: logs)
        case .running:
            return FalStatusResponse(status: .inProgress, request_id: id, response_url: baseURL, logs: logs)
        case .done, .failed, .canceled:
            var metrics: [String: JSONValue] = [:]
            if let claimed = job.claimedAt, let done = job.doneAt {
                metrics["inference_time"] = .double(done.timeIntervalSince(claimed))
            }
            let (error, errorType) = falError(job)
            return FalStatusResponse(
                status: .completed, request_id: id, response_url: baseURL, logs: logs, metrics: metrics, error: error, error_type: errorType)
        }
    }

    /// fal has no failed or canceled status: both are COMPLETED with an error and its type.
    static func falError(_ job: JobRecord) -> (String?, String?) {
        switch job.status {
        case .failed: (job.error ?? "The job failed.", job.errorType ?? JobsTable.ErrorType.runnerError)
        case .canceled: ("The request was cancelled.", "request_cancelled")
        default: (nil, nil)
        }
    }
}
