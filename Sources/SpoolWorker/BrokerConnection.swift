import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// Why a call to the broker did not succeed.
enum BrokerCallError: Error, CustomStringConvertible {
    /// 409: this worker's lease on the job moved on (fencing). Stop and report nothing.
    case leaseLost(String)
    /// A 4xx other than 409: retrying the same request cannot help (bad key, bad request).
    case refused(status: Int, message: String)
    /// The broker could not be reached, timed out, or answered 5xx/429: worth retrying.
    case transient(String)

    var description: String {
        switch self {
        case .leaseLost(let message): "lease lost: \(message)"
        case .refused(let status, let message): "refused (\(status)): \(message)"
        case .transient(let message): message
        }
    }
}

/// The worker protocol over HTTP, to one of several broker replicas.
///
/// A transient failure moves to the next broker URL; the first failure and the first success
/// after failures are logged once each, not on every retry.
final class BrokerConnection: Sendable {
    let urls: [String]
    let apiKey: String?
    let http: HTTPClient
    let logger: Logger
    private let state = Mutex((current: 0, reachable: true))

    init(urls: [String], apiKey: String?, connections: Int, caFile: String?, logger: Logger) {
        self.urls = urls.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.apiKey = apiKey
        self.logger = logger
        var configuration = HTTPClient.Configuration()
        // Long-polls, heartbeats and completes run at once: give each a connection rather than queueing.
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: connections)
        configuration.timeout.connect = .seconds(5)
        // A refused connection should fail the call now, so the worker moves to another replica or backs off.
        configuration.connectionPool.retryConnectionEstablishment = false
        // Besides the system's store: --ca-file, and SSL_CERT_FILE as curl and Python honour it.
        let roots = Self.trustedCAFiles(caFile: caFile, environment: ProcessInfo.processInfo.environment)
        if !roots.isEmpty {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.additionalTrustRoots = roots.map { .file($0) }
            configuration.tlsConfiguration = tls
        }
        self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    /// The CA bundles to trust besides the system's: `caFile`, and `SSL_CERT_FILE` when it names a readable file.
    static func trustedCAFiles(caFile: String?, environment: [String: String]) -> [String] {
        var files: [String] = []
        if let caFile { files.append(caFile) }
        if let bundle = environment["SSL_CERT_FILE"], !bundle.isEmpty, bundle != caFile, FileManager.default.isReadableFile(atPath: bundle) {
            files.append(bundle)
        }
        return files
    }

    /// The broker URL calls go to now.
    var currentURL: String { urls[state.withLock { $0.current } % urls.count] }

    func shutdown() async {
        try? await http.shutdown()
    }

    /// One long-poll for up to `request.max_jobs` jobs.
    func lease(_ request: LeaseRequest) async throws -> [LeasedJob] {
        let answer: LeaseResponse = try await call(
            "/v1/worker/lease", body: request, timeout: .seconds(request.wait_seconds + 15))
        return answer.jobs
    }

    func heartbeat(requestID: String, _ request: HeartbeatRequest) async throws -> HeartbeatResponse {
        try await call("/v1/worker/jobs/\(requestID)/heartbeat", body: request, timeout: .seconds(15))
    }

    /// Complete, fail or release, retried through transient failures until `deadline`.
    func finish(
        requestID: String, action: String, body: some JSONValueEncodable & Sendable, until deadline: ContinuousClock.Instant
    ) async throws
        -> JobWriteResponse
    {
        try await callRetrying("/v1/worker/jobs/\(requestID)/\(action)", body: body, until: deadline)
    }

    /// A write retried through transient failures (with backoff, on the next replica) until `deadline`.
    /// Worker writes are safe to repeat: each names its lease token.
    func callRetrying<Answer: JSONValueDecodable>(
        _ path: String, body: some JSONValueEncodable & Sendable, until deadline: ContinuousClock.Instant
    )
        async throws -> Answer
    {
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        while true {
            do {
                return try await call(path, body: body, timeout: .seconds(15))
            } catch BrokerCallError.transient(let message) {
                guard ContinuousClock.now < deadline, !Task.isCancelled else { throw BrokerCallError.transient(message) }
                try await Task.sleep(for: backoff.next())
            }
        }
    }

    /// One request to the current broker URL; a transient failure moves to the next URL.
    func call<Answer: JSONValueDecodable>(_ path: String, body: some JSONValueEncodable & Sendable, timeout: Duration) async throws -> Answer {
        let index = state.withLock { $0.current }
        let base = urls[index % urls.count]
        var request = HTTPClientRequest(url: base + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.body = .bytes(ByteBuffer(bytes: body.jsonValue.jsonBytes))
        let status: Int
        let bytes: ByteBuffer
        do {
            let response = try await http.execute(request, timeout: TimeAmount(timeout))
            status = Int(response.status.code)
            bytes = try await response.body.collect(upTo: 64 << 20)
        } catch {
            if Task.isCancelled { throw CancellationError() }
            failed(base, index: index, reason: "\(error)")
            throw BrokerCallError.transient("\(base) unreachable: \(error)")
        }
        switch status {
        case 200..<300:
            recovered(base)
            do {
                return try Answer(jsonValue: JSONValue.parse(bytes.readableBytesView))
            } catch {
                throw BrokerCallError.refused(status: status, message: "unreadable answer from \(base)\(path): \(error)")
            }
        case 409:
            recovered(base)
            throw BrokerCallError.leaseLost(Self.message(bytes))
        case 429, 500...:
            failed(base, index: index, reason: "HTTP \(status)")
            throw BrokerCallError.transient("\(base)\(path) answered \(status): \(Self.message(bytes))")
        default:
            recovered(base)
            throw BrokerCallError.refused(status: status, message: Self.message(bytes))
        }
    }

    private func failed(_ base: String, index: Int, reason: String) {
        let wasReachable = state.withLock { state in
            defer {
                state.reachable = false
                // Move on only from the URL that failed: concurrent failures move once.
                if state.current == index { state.current = (index + 1) % urls.count }
            }
            return state.reachable
        }
        if wasReachable {
            logger.warning("broker unreachable; retrying with backoff", metadata: ["broker": "\(base)", "reason": "\(reason)"])
        } else {
            logger.debug("broker call failed again", metadata: ["broker": "\(base)", "reason": "\(reason)"])
        }
    }

    private func recovered(_ base: String) {
        let wasReachable = state.withLock { state in
            defer { state.reachable = true }
            return state.reachable
        }
        if !wasReachable { logger.notice("broker reachable again", metadata: ["broker": "\(base)"]) }
    }

    private static func message(_ bytes: ByteBuffer) -> String {
        if let json = try? JSONValue.parse(bytes.readableBytesView), let message = json.objectValue?["message"]?.stringValue {
            return message
        }
        return String(buffer: bytes).prefix(500).description
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
