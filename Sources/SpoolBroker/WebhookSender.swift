import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Delivers webhooks from the outbox: signed, retried on the Standard Webhooks schedule for the
/// retry period, stopped by a 410. Runs on every replica; each attempt leases its delivery, so two
/// replicas never make the same attempt, and a delivery whose sender died is retried by another.
struct WebhookSender: Service {
    let store: SpoolStore
    let configuration: BrokerConfiguration
    let signer: WebhookSigner
    let targets: WebhookTargets
    let wakeups: Signal
    let metrics: BrokerMetrics
    let schema: SchemaReadiness
    let logger: Logger

    /// How long one attempt holds its delivery: longer than the request timeout.
    static let attemptLeaseSeconds: Double = 60
    static let requestTimeout: TimeAmount = .seconds(15)
    static let batchSize = 16

    func run() async throws {
        var httpConfiguration = HTTPClient.Configuration()
        // A redirect could lead anywhere, the private network included: a redirect is a failed attempt.
        httpConfiguration.redirectConfiguration = .disallow
        httpConfiguration.timeout = .init(connect: .seconds(5), read: Self.requestTimeout)
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        await cancelWhenGracefulShutdown {
            guard (try? await schema.wait()) != nil else { return }
            await loop(http)
        }
        try? await http.shutdown()
    }

    private func loop(_ http: HTTPClient) async {
        var failing = false
        while !Task.isCancelled {
            do {
                let due = try await store.webhookDeliveries.takeDue(
                    limit: Self.batchSize, leaseSeconds: Self.attemptLeaseSeconds, on: store.client, logger: logger)
                failing = false
                if due.isEmpty {
                    await wakeups.wait(timeout: .seconds(1))
                    continue
                }
                await withTaskGroup(of: Void.self) { group in
                    for delivery in due { group.addTask { await attempt(delivery, http: http) } }
                }
            } catch {
                if Task.isCancelled { return }
                if !failing { logger.error("webhook delivery cannot read the outbox; retrying", metadata: ["error": "\(error)"]) }
                failing = true
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// One attempt: check the target again, POST the signed body, record what happened.
    func attempt(_ delivery: DueDelivery, http: HTTPClient) async {
        let result = await send(delivery, http: http)
        switch result {
        case .delivered: metrics.webhooksDelivered.increment()
        case .gone: metrics.webhooksGone.increment()
        case .failed(_, _, let retry): retry == nil ? metrics.webhooksGivenUp.increment() : metrics.webhookAttemptsFailed.increment()
        }
        do {
            let state = try await store.webhookDeliveries.record(result, of: delivery, on: store.client, logger: logger)
            let metadata: Logger.Metadata = [
                "webhook_id": "\(delivery.webhookID)", "attempt": "\(delivery.attempt)", "state": "\(state ?? "taken over")",
            ]
            if case .failed(let code, let error, _) = result {
                logger.notice("webhook attempt failed", metadata: metadata.merging(["status": "\(code.map(String.init) ?? "-")", "error": "\(error)"]) { $1 })
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
            return .failed(statusCode: nil, error: "\(error)", retryAfterSeconds: retryDelay(after: delivery))
        }
        var request = HTTPClientRequest(url: delivery.url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "spool-broker")
        for (name, value) in signer.headers(webhookID: delivery.webhookID, timestamp: Int(Date().timeIntervalSince1970), body: delivery.body) {
            request.headers.add(name: name, value: value)
        }
        request.body = .bytes(ByteBuffer(string: delivery.body))
        do {
            let response = try await http.execute(request, timeout: Self.requestTimeout)
            _ = try? await response.body.collect(upTo: 64 * 1024)
            let code = Int(response.status.code)
            switch code {
            case 200..<300: return .delivered(statusCode: code)
            case 410: return .gone
            default: return .failed(statusCode: code, error: "The receiver answered \(code).", retryAfterSeconds: retryDelay(after: delivery))
            }
        } catch {
            return .failed(statusCode: nil, error: "\(error)", retryAfterSeconds: retryDelay(after: delivery))
        }
    }

    /// When to try again after attempt `delivery.attempt` failed, per the schedule; nil when the
    /// schedule is spent or the next attempt would fall after the retry period.
    func retryDelay(after delivery: DueDelivery) -> Double? {
        let delays = configuration.webhookRetryDelays
        guard Int(delivery.attempt) < delays.count else { return nil }
        let delay = delays[Int(delivery.attempt)]
        guard Date().addingTimeInterval(delay) <= delivery.createdAt.addingTimeInterval(configuration.webhookRetrySeconds) else { return nil }
        return delay
    }
}
