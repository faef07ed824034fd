import Foundation
@_exported import SpoolCore
import Synchronization

/// Runs jobs of the models a worker serves: the part of a worker you write.
public protocol JobHandler: Sendable {
    /// Runs one job and returns its outputs.
    ///
    /// Throw ``JobFailure`` to fail the job (retryable or not); any other error fails it without
    /// retry. When the broker asks the job to stop (canceled, or past its maximum run time) or the
    /// worker drains, the task running this is cancelled: return or throw soon after.
    func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue]
}

/// A leased job as a handler sees it.
public struct Job: Sendable, Equatable {
    public var requestID: String
    public var model: String
    public var payload: [String: JSONValue]
    /// The job's info as of the lease: what the client submitted plus earlier attempts' emits.
    public var info: [String: JSONValue]
    /// 1 for the first run; more after retries.
    public var attempt: Int32
    public var priority: Int32
    /// The endpoint within the app the client called (fal's `/{owner}/{app}/{path}`), if any.
    public var path: String?

    public init(
        requestID: String, model: String, payload: [String: JSONValue], info: [String: JSONValue] = [:], attempt: Int32 = 1,
        priority: Int32 = 0, path: String? = nil
    ) {
        self.path = path
        self.requestID = requestID
        self.model = model
        self.payload = payload
        self.info = info
        self.attempt = attempt
        self.priority = priority
    }
}

/// A handler's failure: `retryable` lets the broker run the job again (within its retry limit).
public struct JobFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var retryable: Bool

    public init(_ message: String, retryable: Bool = false) {
        self.message = message
        self.retryable = retryable
    }

    public var description: String { message }
}

/// What a running job can tell the broker: progress (`emit`) and log lines, sent with the next heartbeat.
public final class JobContext: Sendable {
    private struct Pending {
        var patch: [String: JSONValue] = [:]
        var logs: [JobLogLine] = []
        var stopReason: StopReason?
    }

    private let pending = Mutex(Pending())
    private let onReport: @Sendable () -> Void
    /// Stores a file with the broker: (path, name, content type) → the file's object.
    typealias Uploader = @Sendable (_ path: String, _ name: String, _ contentType: String) async throws -> JSONValue
    private let uploader: Uploader?

    init(onReport: @escaping @Sendable () -> Void = {}, uploader: Uploader? = nil) {
        self.onReport = onReport
        self.uploader = uploader
    }

    /// Uploads the file at `path` to the broker's files store (streamed, never read whole) and
    /// returns the object to put in the outputs in its place: `file_id`, `file_name`, `file_size`,
    /// `content_type`, `url` (downloaded with the client's own key). A failed upload throws a
    /// retryable ``JobFailure``: the job runs again rather than finishing without its file.
    public func upload(fileAt path: String, name: String? = nil, contentType: String? = nil) async throws -> JSONValue {
        guard let uploader else { throw JobFailure("This job context cannot upload files (it is not run by a Worker).") }
        let name = name ?? (path as NSString).lastPathComponent
        return try await uploader(path, name, contentType ?? BrokerConnection.contentType(forFileNamed: name))
    }

    /// Merges `patch` into the job's `info` (top-level keys replace), so status polls show it:
    /// `context.emit(["progress": 0.5])`. Sent within a fraction of a second.
    public func emit(_ patch: [String: JSONValue]) {
        pending.withLock { $0.patch.merge(patch) { _, new in new } }
        onReport()
    }

    /// Adds a line to the job's log.
    public func log(_ message: String, level: String = "info", source: String = "handler") {
        let line = JobLogLine(message: message, level: JobLogLine.levels.contains(level) ? level : "info", source: source, timestamp: .now)
        pending.withLock { $0.logs.append(line) }
        onReport()
    }

    /// Set once the broker has asked this job to stop; the handler's task is cancelled too.
    public var stopReason: StopReason? { pending.withLock { $0.stopReason } }

    func requestStop(_ reason: StopReason) {
        pending.withLock { $0.stopReason = reason }
    }

    /// Takes what was emitted and logged since the last call, for a heartbeat or a final write;
    /// log lines beyond what one request may carry wait for the next.
    func takeReport() -> (patch: [String: JSONValue], logs: [JobLogLine]) {
        pending.withLock { pending in
            var bytes = 0
            var count = 0
            for line in pending.logs {
                bytes += line.message.utf8.count + 64
                guard count < WorkerProtocolLimits.maxLogLinesPerWrite, count == 0 || bytes <= 1 << 20 else { break }
                count += 1
            }
            defer {
                pending.patch = [:]
                pending.logs.removeFirst(count)
            }
            return (pending.patch, Array(pending.logs.prefix(count)))
        }
    }

    /// Puts back a report a failed heartbeat could not deliver, under anything newer.
    func restoreReport(_ report: (patch: [String: JSONValue], logs: [JobLogLine])) {
        pending.withLock { pending in
            pending.patch = report.patch.merging(pending.patch) { _, newer in newer }
            pending.logs = report.logs + pending.logs
        }
    }

    var hasReport: Bool { pending.withLock { !$0.patch.isEmpty || !$0.logs.isEmpty } }
}

extension LeaseReport {
    /// A write's report of what a job emitted and logged since the last one; empty parts are left out of the request.
    init(lease_token: String, pending: (patch: [String: JSONValue], logs: [JobLogLine])) {
        self.init(lease_token: lease_token, info: pending.patch.isEmpty ? nil : pending.patch, logs: pending.logs.isEmpty ? nil : pending.logs)
    }
}
