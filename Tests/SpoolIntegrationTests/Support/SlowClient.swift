import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOPosix
import SpoolCore
import Synchronization

/// A client that sends part of a body and then nothing: a stalled upload, a slow client, or (once
/// cancelled) one that hung up mid-request. Its requests run on a client of their own with room
/// for many connections, so they reach the broker instead of queueing in the client's pool.
final class SlowRequest: Sendable {
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow,
            connectionPool: .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256))
        // A fresh connection per request: a reused one can be closed by a broker with a short idle
        // timeout just as the request goes out, and the test would fail on the race, not the broker.
        configuration.maximumUsesPerConnection = 1
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

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

/// A request written straight to a TCP socket, below any HTTP client library: it shows exactly
/// when the broker closes the connection, with no client pool or body stream in between.
final class RawRequest: Sendable {
    private let channel: any Channel
    private let received: ReceivedBytes

    /// Connects to `url`'s host and writes the request head (with `Content-Length: length`) and `first`.
    init(_ method: String, _ url: String, headers: [(String, String)], first: String, length: Int) async throws {
        guard let parts = URLComponents(string: url), let host = parts.host, let port = parts.port else {
            throw TestFailure("not an http URL with a port: \(url)")
        }
        let received = ReceivedBytes()
        channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) } }
            .connect(host: host, port: port).get()
        self.received = received
        let target = parts.percentEncodedPath + (parts.percentEncodedQuery.map { "?" + $0 } ?? "")
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Length: \(length)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        try await channel.writeAndFlush(ByteBuffer(string: head + "\r\n" + first))
    }

    /// Whether the broker closes the connection within `duration`.
    func isClosed(within duration: Duration) async -> Bool {
        let deadline = ContinuousClock.now + duration
        while ContinuousClock.now < deadline {
            if !channel.isActive { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return !channel.isActive
    }

    /// What the broker sent back, as text.
    var answer: String { received.text }

    func close() { channel.close(promise: nil) }
}

/// The bytes a raw connection received.
private final class ReceivedBytes: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    private let bytes = Mutex(ByteBuffer())
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        _ = bytes.withLock { $0.writeBuffer(&buffer) }
    }
    var text: String { bytes.withLock { String(buffer: $0) } }
}
