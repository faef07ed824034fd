import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Conditional and long-polled status reads (`If-None-Match`, `wait=`): a polling client pays for
/// an answer only when its job changed, and may wait for the change instead of asking again.
///
/// The ETag is weak: it covers the job (status, progress and info, outputs, error, times,
/// warnings, webhook, logs when asked for) but not its queue position or estimated wait, which move
/// with other jobs; so neither a 304 nor a long-poll's wake-up happens only because the queue moved.
struct StatusLongPoll: Sendable {
    /// The longest `wait` accepted: under the idle timeouts of common proxies (60 s).
    static let maxWaitSeconds = 50

    let store: Store
    let watchers: JobWatchers
    let views: JobViews

    /// The weak ETag of a status answer.
    static func etag(of status: JobStatusResponse) -> String {
        var tagged = status
        tagged.queue_position = nil
        tagged.estimated_wait_seconds = nil
        return "W/\"" + SHA256.hash(data: tagged.jsonValue.jsonBytes).prefix(12).lowercaseHex + "\""
    }

    /// Whether `If-None-Match` names this ETag (weak comparison, as RFC 9110 has it for GET).
    static func matches(_ ifNoneMatch: String?, _ etag: String) -> Bool {
        guard let ifNoneMatch else { return false }
        let opaque = { (tag: Substring) -> Substring in
            let trimmed = tag.drop(while: { $0 == " " })
            return trimmed.hasPrefix("W/") ? trimmed.dropFirst(2) : trimmed
        }
        let wanted = opaque(Substring(etag))
        return ifNoneMatch.split(separator: ",").contains { tag in
            let candidate = opaque(tag).prefix(while: { $0 != " " })
            return candidate == "*" || candidate == wanted
        }
    }

    /// `wait` from the query: 1 to `maxWaitSeconds`, or nil when absent.
    static func waitSeconds(_ request: Request) throws -> Int? {
        guard let text = request.uri.queryParameters.get("wait") else { return nil }
        guard let seconds = Int(text), (0...maxWaitSeconds).contains(seconds) else {
            throw SpoolError.invalidRequest(
                "'wait' must be a whole number of seconds from 0 to \(maxWaitSeconds).", code: "invalid_field", param: "wait")
        }
        return seconds == 0 ? nil : seconds
    }

    /// The status answer: 304 when `If-None-Match` names the current state, else 200 with the
    /// body and its ETag. With `wait`, a job that is not finished and whose state the client
    /// already has (its ETag, or, without one, the state at arrival) is answered when it changes
    /// or when the wait is over, whichever comes first. States are compared without the queue
    /// position, which is counted only for an answer with a body.
    func respond(
        to request: Request, model: String, requestID: UUID, withLogs: Bool, caller: Caller, wait: Int?, logger: Logger
    ) async throws -> Response? {
        let load = {
            try await views.load(model: model, requestID: requestID, withLogs: withLogs, caller: caller, withPosition: false, logger: logger)
        }
        guard var view = try await load() else { return nil }
        let ifNoneMatch = request.headers[.ifNoneMatch]
        var etag = Self.etag(of: JobViews.together(view))
        if let wait, !view.record.status.isTerminal, ifNoneMatch == nil || Self.matches(ifNoneMatch, etag) {
            let baseline = etag
            let deadline = ContinuousClock.now + .seconds(wait)
            let ticket = watchers.register(requestID)
            defer { watchers.unregister(ticket) }
            // Marked watched, so any replica's change to the row is announced (NOTIFY) to this one.
            try await store.jobs.watch(requestID: requestID, seconds: Double(wait + 5), on: store.client, logger: logger)
            // Read again once watched: a change just before the mark would not be announced.
            while true {
                guard let current = try await load() else { return nil }
                view = current
                etag = Self.etag(of: JobViews.together(view))
                let remaining = deadline - ContinuousClock.now
                if etag != baseline || view.record.status.isTerminal || remaining <= .zero || watchers.isClosed { break }
                // Heartbeats change the row without changing the answer: those wake-ups read again
                // and go back to waiting. A re-read every 5 s covers a lost notification.
                await withGracefulShutdownHandler {
                    await ticket.signal.wait(timeout: min(remaining, .seconds(5)))
                } onGracefulShutdown: {
                    watchers.close()
                }
            }
        }
        let headers: HTTPFields = [.eTag: etag, .cacheControl: "no-cache"]
        if Self.matches(ifNoneMatch, etag) { return Response(status: .notModified, headers: headers) }
        return JSONResponse.make(JobViews.together(try await views.addingPosition(to: view, logger: logger)), headers: headers)
    }
}
