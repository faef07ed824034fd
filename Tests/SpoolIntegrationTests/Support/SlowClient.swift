import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import SpoolCore
import Synchronization

/// A client that sends part of a body and then nothing: a stalled upload, a slow client, or (once
/// cancelled) one that hung up mid-request. Its requests run on a client of their own with room
/// for many connections, so they reach the broker instead of queueing in the client's pool.
final class SlowRequest: Sendable {
    static let http = HTTPClient(
        eventLoopGroupProvider: .singleton,
        configuration: .init(
            redirectConfiguration: .disallow,
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)))

    private let feed: AsyncStream<ByteBuffer>.Continuation
    private let task: Task<Answer, any Error>
    private let ended = Flag()

    /// Starts the request: its head and `first`, out of a body of `length` bytes (nil: chunked).
    init(_ method: HTTPMethod, _ url: String, headers: [(String, String)] = [], first: ByteBuffer, length: Int?) {
        let (stream, feed) = AsyncStream<ByteBuffer>.makeStream()
        feed.yield(first)
        self.feed = feed
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        request.body = .stream(stream, length: length.map { .known(Int64($0)) } ?? .unknown)
        let ended = self.ended
        task = Task {
            defer { ended.set() }
            let response = try await Self.http.execute(request, timeout: .seconds(300))
            let bytes = try await response.body.collect(upTo: 1 << 20)
            let json = bytes.readableBytes == 0 ? JSONValue.null : (try? JSONValue.parse(bytes.readableBytesView)) ?? .null
            var fields = HTTPFields()
            for (name, value) in response.headers { if let name = HTTPField.Name(name) { fields.append(.init(name: name, value: value)) } }
            return Answer(status: Int(response.status.code), headers: fields, json: json)
        }
    }

    /// Sends more of the body.
    func send(_ bytes: ByteBuffer) { feed.yield(bytes) }

    /// Ends the body: the request completes and its answer comes.
    func finish() { feed.finish() }

    /// Hangs up: the request is cancelled and its connection closed.
    func hangUp() { task.cancel() }

    /// The answer, or the error that ended the request (the broker closed the connection, say).
    var result: Result<Answer, any Error> {
        get async { await task.result }
    }

    /// Whether the request ends (answered or not) within `duration`.
    func hasEnded(within duration: Duration) async -> Bool {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if ended.isSet { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return ended.isSet
    }
}

/// A multipart/form-data body with a purpose field and a file part.
func multipartBody(boundary: String, purpose: String = "batch-api", filename: String = "in.jsonl", content: String) -> String {
    "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n\(purpose)\r\n"
        + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\nContent-Type: application/jsonl\r\n\r\n"
        + content + "\r\n--\(boundary)--\r\n"
}

/// A flag one task sets and others read.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
