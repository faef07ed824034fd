import AsyncHTTPClient
import Foundation
import NIOCore
import SpoolCore
import Synchronization

/// A Server-Sent Events client: reads a stream in the background and keeps what arrived, with when.
final class EventStream: Sendable {
    struct Event: Sendable {
        /// The `data:` payload as JSON, or nil for a comment line such as a keep-alive.
        let data: JSONValue?
        let comment: String?
        let at: ContinuousClock.Instant
    }

    private let state = Mutex<(events: [Event], ended: Bool, status: Int?, contentType: String?)>(([], false, nil, nil))
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(url: String, headers: [(String, String)] = []) {
        let reader = Task { [self] in
            var request = HTTPClientRequest(url: url)
            for (name, value) in headers { request.headers.add(name: name, value: value) }
            do {
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
                self.state.withLock {
                    $0.status = Int(response.status.code)
                    $0.contentType = response.headers.first(name: "Content-Type")
                }
                var pending = ""
                for try await chunk in response.body {
                    pending += String(buffer: chunk)
                    while let end = pending.range(of: "\n\n") {
                        let block = String(pending[..<end.lowerBound])
                        pending = String(pending[end.upperBound...])
                        let event: Event
                        if block.hasPrefix("data: ") {
                            event = Event(data: try? JSONValue.parse(String(block.dropFirst(6))), comment: nil, at: .now)
                        } else {
                            event = Event(data: nil, comment: block, at: .now)
                        }
                        self.state.withLock { $0.events.append(event) }
                    }
                }
            } catch {}
            self.state.withLock { $0.ended = true }
        }
        task.withLock { $0 = reader }
    }

    var events: [Event] { state.withLock { $0.events } }
    var dataEvents: [JSONValue] { events.compactMap(\.data) }
    var ended: Bool { state.withLock { $0.ended } }
    var status: Int? { state.withLock { $0.status } }
    var contentType: String? { state.withLock { $0.contentType } }

    func cancel() { task.withLock { $0?.cancel() } }
}
