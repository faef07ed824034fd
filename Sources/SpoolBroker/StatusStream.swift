import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// A job's status as Server-Sent Events: one `data:` event per change, a keep-alive comment when
/// quiet, and the end of the stream once the job is final.
///
/// Changes arrive as NOTIFY from whichever replica made them (the job is marked watched while the
/// stream is open); a pending job is also re-read every second, since its queue position moves
/// without its row changing, and a running one every few seconds in case a notification was lost.
struct StatusStream: Sendable {
    let store: Store
    let watchers: JobWatchers
    let keepAlive: Duration
    /// How often a running job is re-read in case a notification was lost.
    let reread: Duration

    /// One rendered state: the event to send, whether it is the last, and whether the job is still queued.
    struct Frame: Sendable {
        var event: JSONValue
        var isFinal: Bool
        var isQueued: Bool
    }

    func response(
        requestID: UUID, headers extra: HTTPFields = [:], logger: Logger, next: @escaping @Sendable () async throws -> Frame?
    ) -> Response {
        var headers = extra
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        let body = ResponseBody { writer in
            let ticket = watchers.register(requestID)
            defer { watchers.unregister(ticket) }
            var lastEvent: String?
            var lastWrite = ContinuousClock.now
            var lastWatch: ContinuousClock.Instant?
            while !watchers.isClosed {
                if lastWatch.map({ ContinuousClock.now - $0 >= .seconds(30) }) ?? true {
                    try await store.jobs.watch(requestID: requestID, seconds: 90, on: store.client, logger: logger)
                    lastWatch = .now
                }
                guard let frame = try await next() else { break }
                let text = frame.event.jsonText
                if text != lastEvent {
                    try await writer.write(ByteBuffer(string: "data: \(text)\n\n"))
                    lastEvent = text
                    lastWrite = .now
                }
                if frame.isFinal { break }
                if ContinuousClock.now - lastWrite >= keepAlive {
                    // A comment line: clients ignore it, proxies see traffic and keep the connection.
                    try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                    lastWrite = .now
                }
                let untilKeepAlive = keepAlive - (ContinuousClock.now - lastWrite)
                let poll: Duration = frame.isQueued ? .seconds(1) : reread
                await withGracefulShutdownHandler {
                    await ticket.signal.wait(timeout: min(untilKeepAlive, poll))
                } onGracefulShutdown: {
                    watchers.close()
                }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}
