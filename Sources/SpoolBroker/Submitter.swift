import Crypto
import Foundation
import Hummingbird
import Logging
import SpoolCore
import SpoolStore

/// Stores submitted jobs for every client API, honouring `Idempotency-Key`.
struct Submitter: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    let targets: WebhookTargets
    let metrics: BrokerMetrics
    /// Submits without an idempotency key, written many to a statement under load.
    let inserts: SubmitGroupCommit
    let quotas: TenantQuotas
    /// Leases waiting on this broker: an idle one takes a submitted job without a NOTIFY or a claim.
    let waiters: LeaseWaiters

    /// Longest `Idempotency-Key` accepted; Stripe and the IETF draft use similar limits.
    static let maxIdempotencyKeyLength = 255

    /// Stores the job. With an `Idempotency-Key`, a retry with the same key and request returns the
    /// first job (`replayed`) and creates nothing; the same key for another request is a 409.
    func submit(
        _ submit: SubmitRequest, body: JSONValue, request: Request, context: BrokerRequestContext
    ) async throws -> (requestID: UUID, replayed: Bool) {
        try await checkWebhook(of: submit)
        var idempotency: (key: String, requestHash: String, windowSeconds: Int)?
        if let key = request.headers[.idempotencyKey] {
            guard !key.isEmpty, key.count <= Self.maxIdempotencyKeyLength else {
                throw SpoolError.invalidRequest(
                    "The Idempotency-Key header must be 1 to \(Self.maxIdempotencyKeyLength) characters.",
                    code: "invalid_idempotency_key", param: "Idempotency-Key")
            }
            idempotency = (key, Self.requestHash(submit, body: body), configuration.idempotencyWindowSeconds)
        }
        let tenant = context.caller.ownTenant
        let weight = configuration.tenants.limits(of: tenant).weight
        try await quotas.admitSubmit(tenant: tenant, logger: context.logger)
        guard let idempotency else {
            let requestID = UUID()
            let job = NewJob(request: submit, requestID: requestID, submittedBy: context.caller.id, tenant: tenant, weight: weight)
            if try await !handOver(job, logger: context.logger) { try await inserts.submit(job) }
            metrics.count("submitted", model: submit.model)
            return (requestID, false)
        }
        switch try await store.submit(
            submit, submittedBy: context.caller.id, tenant: tenant, weight: weight, idempotency: idempotency, logger: context.logger)
        {
        case .created(let requestID):
            metrics.count("submitted", model: submit.model)
            return (requestID, false)
        case .replayed(let requestID):
            return (requestID, true)
        case .idempotencyKeyReused:
            throw SpoolError.conflict(
                "This Idempotency-Key was already used for a different request within the last \(configuration.idempotencyWindowSeconds / 3600) hours; use a new key for a new request.",
                code: "idempotency_key_reused", param: "Idempotency-Key")
        }
    }
}

extension Submitter {
    /// Stores the job as the lease of an idle worker waiting on this broker for its model, in the
    /// submit's own statement, when no job of that worker's models is waiting (it would go first);
    /// false when no such lease waits here (the job is not stored). With running limits per tenant
    /// the claim decides, so jobs always go through the queue.
    func handOver(_ job: NewJob, logger: Logger) async throws -> Bool {
        guard configuration.tenants.runningLimits.isEmpty, let reservation = waiters.reserve(model: job.request.model) else {
            return false
        }
        let claimed: ClaimedJob?
        do {
            claimed = try await store.jobs.insertHandedOver(job, to: reservation.terms, on: store.client, logger: logger)
        } catch {
            waiters.cancel(reservation)
            throw error
        }
        guard let claimed else {
            // Stored pending behind others: the reserved lease claims in order like any other.
            waiters.cancel(reservation)
            return true
        }
        metrics.count("handed_over", model: job.request.model)
        if !waiters.deliver([claimed], to: reservation) {
            _ = try await store.jobs.handBack([(claimed.requestID, claimed.leaseToken)], on: store.client, logger: logger)
        }
        return true
    }

    /// Stores a bulk submit's jobs in one statement (one transaction when any has an
    /// idempotency key): all of them, or, on any refusal, none. Ids come back in the order sent.
    func submitMany(_ items: [BulkSubmitItem], context: BrokerRequestContext) async throws -> [(requestID: UUID, replayed: Bool)] {
        // Distinct hosts are capped and each is resolved once, so one request cannot hold the
        // broker in a thousand DNS lookups; every URL is still parsed and checked on its own.
        let named = Set(items.compactMap { $0.request.webhookURL.flatMap { URLComponents(string: $0)?.host?.lowercased() } })
        guard named.count <= Self.maxWebhookHostsPerBulk else {
            throw SpoolError.invalidRequest(
                "The jobs name webhooks on \(named.count) different hosts; a bulk submit takes at most \(Self.maxWebhookHostsPerBulk). Split it by receiver.",
                code: "too_many_webhook_hosts", param: "webhook_url")
        }
        var hosts: [String: Int] = [:]
        for (index, item) in items.enumerated() {
            guard let url = item.request.webhookURL else { continue }
            do {
                try checkWebhookSecret(of: item.request)
                let host = try targets.parse(url, param: Self.webhookParam(of: item.request)).host.lowercased()
                if hosts[host] == nil { hosts[host] = index }
            } catch let error as SpoolError {
                throw error.atJob(index)
            }
        }
        for (host, index) in hosts.sorted(by: { $0.value < $1.value }) {
            do { try await targets.checkAddresses(of: host, param: "webhook_url") } catch let error as SpoolError { throw error.atJob(index) }
        }
        let tenant = context.caller.ownTenant
        let weight = configuration.tenants.limits(of: tenant).weight
        try await quotas.admitSubmit(tenant: tenant, count: items.count, logger: context.logger)
        let jobs = items.map {
            NewJob(request: $0.request, requestID: UUID(), submittedBy: context.caller.id, tenant: tenant, weight: weight)
        }
        let keys = items.map { item in item.idempotencyKey.map { (key: $0, requestHash: Self.requestHash(item.request, body: item.body)) } }
        switch try await store.submitMany(
            jobs, idempotency: keys, owner: context.caller.id, windowSeconds: configuration.idempotencyWindowSeconds, logger: context.logger)
        {
        case .submitted(let answers):
            for (job, answer) in zip(jobs, answers) where !answer.replayed { metrics.count("submitted", model: job.request.model) }
            return answers
        case .idempotencyKeyReused(let index):
            throw SpoolError.conflict(
                "This idempotency_key was already used for a different request within the last \(configuration.idempotencyWindowSeconds / 3600) hours; use a new key for a new request. Nothing was stored.",
                code: "idempotency_key_reused", param: "idempotency_key"
            ).atJob(index)
        }
    }

    /// Most distinct webhook hosts one bulk submit may name: each is resolved before anything is stored.
    static let maxWebhookHostsPerBulk = 16

    /// A webhook is refused at submit when the broker cannot sign it or its target is not allowed.
    func checkWebhook(of submit: SubmitRequest) async throws {
        guard let url = submit.webhookURL else { return }
        try checkWebhookSecret(of: submit)
        _ = try await targets.check(url, param: Self.webhookParam(of: submit))
    }

    /// A job with a webhook is refused when the broker has no secret to sign it with.
    func checkWebhookSecret(of submit: SubmitRequest) throws {
        guard submit.webhookURL != nil, configuration.webhookSecret == nil else { return }
        throw SpoolError.invalidRequest(
            "This broker sends no webhooks: it has no signing secret (--webhook-secret/SPOOL_WEBHOOK_SECRET). Poll or stream the status instead.",
            code: "webhooks_disabled", param: Self.webhookParam(of: submit))
    }

    /// The field each API names its webhook with.
    static func webhookParam(of submit: SubmitRequest) -> String {
        switch submit.webhookFormat {
        case .fal: "fal_webhook"
        case .runpod: "webhook"
        case .spool: "webhook_url"
        }
    }

    /// The request in canonical form, hashed: a retry that reorders the body's keys is still the
    /// same request, and so is a job sent alone or in a bulk submit.
    static func requestHash(_ submit: SubmitRequest, body: JSONValue) -> String {
        var canonical: [String: JSONValue] = [
            "body": body, "model": .string(submit.model), "path": submit.path.map(JSONValue.string) ?? .null,
            "priority": .int(Int64(submit.priority)),
            "start_timeout": submit.startTimeoutSeconds.map(JSONValue.double) ?? .null,
            "webhook": submit.webhookURL.map(JSONValue.string) ?? .null,
        ]
        // Only when set, so the keys of requests without it keep their hash.
        if let maxRun = submit.maxRunSeconds { canonical["max_run"] = .double(maxRun) }
        return SHA256.hash(data: Data(JSONValue.object(canonical).jsonText.utf8)).lowercaseHex
    }
}

extension Request {
    /// Whether the query asks for log lines: `logs=1` or `logs=true`.
    var wantsLogs: Bool {
        guard let value = uri.queryParameters.get("logs") else { return false }
        return ["1", "true", "yes"].contains(value.lowercased())
    }
}
