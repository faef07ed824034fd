import Foundation
import Logging
import SpoolCore
import SpoolStore

/// A tenant's submit quotas, checked before anything is stored: submits per second (a token
/// bucket in the database, shared by every replica) and jobs waiting at once. Over either, the
/// submit is a 429 naming the limit, with `Retry-After`, and nothing is stored.
struct TenantQuotas: Sendable {
    let store: Store
    let settings: TenantSettings

    /// Admits `count` jobs (a bulk submit's) as a whole or refuses them all.
    func admitSubmit(tenant: String, count: Int = 1, logger: Logger) async throws {
        guard settings.hasSubmitQuotas else { return }
        let limits = settings.limits(of: tenant)
        if let maxPending = limits.maxPending {
            let pending = try await store.jobs.pendingCount(tenant: tenant, upTo: maxPending, on: store.client, logger: logger)
            if pending + count > maxPending {
                throw SpoolError.tooManyRequests(
                    count == 1
                        ? "Tenant '\(tenant)' has \(maxPending) jobs waiting, its limit (max-pending); submit again once some have started."
                        : "Tenant '\(tenant)' has \(pending) jobs waiting; these \(count) would pass its limit of \(maxPending) (max-pending).",
                    code: "max_pending_exceeded", retryAfterSeconds: 5, extra: ["limit": "max_pending", "limit_value": .int(Int64(maxPending))])
            }
        }
        if let rate = limits.submitsPerSecond {
            guard count <= limits.bucketSize else {
                throw SpoolError.invalidRequest(
                    "Tenant '\(tenant)' may submit at most \(limits.bucketSize) jobs at once (its burst); this request has \(count). Split it.",
                    code: "bulk_exceeds_burst")
            }
            let bucket = try await store.rateBuckets.take(
                tenant: tenant, rate: rate, burst: limits.bucketSize, count: count, on: store.client, logger: logger)
            if !bucket.taken {
                throw SpoolError.tooManyRequests(
                    "Tenant '\(tenant)' may submit \(rate.formatted()) jobs per second (burst \(limits.bucketSize)), its limit (rate); try again shortly.",
                    code: "rate_limit_exceeded", retryAfterSeconds: max(1, Int(bucket.retryAfterSeconds.rounded(.up))),
                    extra: ["limit": "submits_per_second", "limit_value": .double(rate)])
            }
        }
    }
}
