import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Delivers webhooks from the outbox: signed, retried on the Standard Webhooks schedule for the
/// retry period, stopped by a 410. Runs on every replica; each attempt leases its delivery, so two
/// replicas never make the same attempt, and a delivery whose sender died is retried by another.
struct WebhookSender: BrokerService {
    let store: Store
    let configuration: BrokerConfiguration
    let signer: WebhookSigner
    let targets: WebhookTargets
    let wakeups: Signal
    let metrics: BrokerMetrics
    let schema: SchemaReadiness
    let logger: Logger

    /// How long one attempt holds its delivery: longer than its deadline and the write of its result.
    static let attemptLeaseSeconds: Double = 60
    /// Attempts under way at once; each runs on its own, so a slow receiver holds only its own slot.
    static let maxInFlight = 64
    /// Deliveries taken from the outbox per read.
    static let batchSize = 16

    func run() async throws {
        var httpConfiguration = HTTPClient.Configuration()
        // A redirect could lead anywhere, the private network included: a redirect is a failed attempt.
        httpConfiguration.redirectConfiguration = .disallow
        httpConfiguration.timeout = .init(connect: .seconds(5), read: .milliseconds(Int64(configuration.webhookAttemptTimeoutSeconds * 1000)))
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        await cancelWhenGracefulShutdown {
            guard (try? await schema.wait()) != nil else { return }
            await loop(http)
        }
        try? await http.shutdown()
    }

    /// Takes due deliveries while slots are free and starts each attempt on its own; waits for a
    /// NOTIFY, a freed slot or the poll interval when there is nothing to take or no slot.
    private func loop(_ http: HTTPClient) async {
        let inFlight = NIOLockedValueBox(0)
        await withDiscardingTaskGroup { group in
            var failing = false
            while !Task.isCancelled {
                let free = Self.maxInFlight - inFlight.withLockedValue { $0 }
                var takeMore = false
                if free > 0 {
                    do {
                        let limit = min(free, Self.batchSize)
                        let due = try await store.webhookDeliveries.takeDue(
                            limit: limit, leaseSeconds: Self.attemptLeaseSeconds, on: store.client, logger: logger)
                        failing = false
                        for delivery in due {
                            inFlight.withLockedValue { $0 += 1 }
                            group.addTask {
                                await attempt(delivery, http: http)
                                inFlight.withLockedValue { $0 -= 1 }
                                wakeups.raise()
                            }
                        }
                        takeMore = due.count == limit
                    } catch {
                        if Task.isCancelled { break }
                        if !failing { logger.error("webhook delivery cannot read the outbox; retrying", metadata: ["error": "\(error)"]) }
                        failing = true
                    }
                }
                if !takeMore { await wakeups.wait(timeout: .seconds(1)) }
            }
            // The broker is stopping: attempts under way end now; their leases let another replica retry them.
            group.cancelAll()
        }
    }

    /// One attempt: check the target again, POST the signed body, record what happened.
    func attempt(_ delivery: DueDelivery, http: HTTPClient) async {
        let result = await send(delivery, http: http)
        switch result {
        case .delivered: metrics.webhooksDelivered.increment()
        case .gone: metrics.webhooksGone.increment()
        case .failed: break
        }
        do {
            let state = try await store.webhookDeliveries.record(
                result, of: delivery, retrySeconds: configuration.webhookRetrySeconds, on: store.client, logger: logger)
            if case .failed = result { state == "failed" ? metrics.webhooksGivenUp.increment() : metrics.webhookAttemptsFailed.increment() }
            let metadata: Logger.Metadata = [
                "webhook_id": "\(delivery.webhookID)", "attempt": "\(delivery.attempt)", "state": "\(state ?? "taken over")",
            ]
            if case .failed(let code, let error, _) = result {
                logger.notice(
                    "webhook attempt failed", metadata: metadata.merging(["status": "\(code.map(String.init) ?? "-")", "error": "\(error)"]) { $1 })
            } else {
                logger.debug("webhook attempt", metadata: metadata)
            }
        } catch {
            // The lease ends and the attempt is made again: at least once, deduplicated by webhook-id.
            logger.error("could not record a webhook attempt", metadata: ["webhook_id": "\(delivery.webhookID)", "error": "\(error)"])
        }
    }

    private func send(_ delivery: DueDelivery, http: HTTPClient) async -> DeliveryResult {
        do {
            _ = try await targets.check(delivery.url, param: "webhook_url")
        } catch let error as SpoolError {
            // The name now resolves somewhere refused: retrying will not help.
            return .failed(statusCode: nil, error: error.message, retryAfterSeconds: nil)
        } catch {
            logger.notice("webhook target check failed", metadata: ["webhook_id": "\(delivery.webhookID)", "error": "\(error)"])
            return .failed(statusCode: nil, error: "The receiver's host could not be resolved.", retryAfterSeconds: retryDelay(after: delivery))
        }
        var request = HTTPClientRequest(url: delivery.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "spool-broker")
        for (name, value) in signer.headers(webhookID: delivery.webhookID, timestamp: Int(Date().timeIntervalSince1970), body: delivery.body) {
            request.headers.add(name: name, value: value)
        }
        request.body = .bytes(ByteBuffer(string: delivery.body))
        let signed = request
        let deadline = Duration.milliseconds(Int64(configuration.webhookAttemptTimeoutSeconds * 1000))
        do {
            // One deadline for the whole attempt: connecting, the answer's head and its body.
            let code = try await withDeadline(deadline) {
                let response = try await http.execute(signed, timeout: .milliseconds(deadline.milliseconds))
                _ = try await response.body.collect(upTo: 64 * 1024)
                return Int(response.status.code)
            }
            switch code {
            case 200..<300: return .delivered(statusCode: code)
            case 410: return .gone
            default: return .failed(statusCode: code, error: "The receiver answered \(code).", retryAfterSeconds: retryDelay(after: delivery))
            }
        } catch {
            // The raw error names addresses and internals: it goes to the log, the delivery gets a plain reason.
            logger.notice("webhook attempt failed", metadata: ["webhook_id": "\(delivery.webhookID)", "error": "\(String(reflecting: error))"])
            return .failed(statusCode: nil, error: Self.reason(error, deadline: deadline), retryAfterSeconds: retryDelay(after: delivery))
        }
    }

    /// Why an attempt failed, in words that reveal nothing about the network behind the receiver.
    static func reason(_ error: any Error, deadline: Duration) -> String {
        let seconds = Double(deadline.components.seconds) + Double(deadline.components.attoseconds) / 1e18
        if error is AttemptDeadlineExceeded {
            return "The receiver did not answer in full within \(seconds.formatted()) s."
        }
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "Connecting to the receiver timed out."
            case .readTimeout, .deadlineExceeded: return "The receiver did not answer in full within \(seconds.formatted()) s."
            case .remoteConnectionClosed: return "The receiver closed the connection before answering."
            default: break
            }
        }
        let text = String(describing: error).lowercased()
        if text.contains("refused") { return "The receiver refused the connection." }
        if text.contains("ssl") || text.contains("tls") || text.contains("certificate") { return "The TLS handshake with the receiver failed." }
        if text.contains("reset") { return "The receiver reset the connection." }
        return "The delivery failed before the receiver answered."
    }
    /// When to try again after attempt `delivery.attempt` failed, per the schedule; nil when the
    /// schedule is spent. Whether that falls within the retry period is decided in `record`.
    func retryDelay(after delivery: DueDelivery) -> Double? {
        let delays = configuration.webhookRetryDelays
        guard Int(delivery.attempt) < delays.count else { return nil }
        return delays[Int(delivery.attempt)]
    }
}

/// An attempt ran past its deadline.
struct AttemptDeadlineExceeded: Error {}

/// Runs `body`, cancelling it and throwing ``AttemptDeadlineExceeded`` once `duration` has passed.
func withDeadline<T: Sendable>(_ duration: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: duration)
            throw AttemptDeadlineExceeded()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

extension Duration {
    var milliseconds: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}
