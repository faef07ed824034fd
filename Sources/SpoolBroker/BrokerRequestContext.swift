import Foundation
import Hummingbird
import Logging
import NIOCore
import SpoolCore
import SpoolStore

/// Who made a request, once the auth middleware has checked its key.
package struct Caller: Sendable, Equatable {
    /// A stable id (never the key): jobs, idempotency keys and audit events are recorded under it.
    package var id: String
    package var scopes: Set<KeyScope>
    package var tenant: String?
    /// Model patterns a worker key serves; nil: every model.
    package var models: [String]?
    /// When the key stops working; nil: never.
    package var expiresAt: Date?

    package init(id: String, scopes: Set<KeyScope>, tenant: String? = nil, models: [String]? = nil, expiresAt: Date? = nil) {
        self.id = id
        self.scopes = scopes
        self.tenant = tenant
        self.models = models
        self.expiresAt = expiresAt
    }

    /// The caller of an open broker (no API keys configured), and of a key from the broker's
    /// configuration: every scope, every model.
    package static let anonymous = Caller(id: "anonymous", scopes: Set(KeyScope.allCases))

    /// The tenant this caller's jobs, files and batches are stored under.
    package var ownTenant: String { tenant ?? NewJob.defaultTenant }

    /// The tenant whose records this caller may read: its own, or nil (every tenant's) for an admin key.
    package var readableTenant: String? { scopes.contains(.admin) ? nil : ownTenant }

    /// Throws the 403 that names the scope a route needs, unless the key has it.
    package func require(_ scope: KeyScope) throws(SpoolError) {
        guard scopes.contains(scope) else {
            let held = scopes.sorted().map(\.rawValue).joined(separator: ", ")
            throw .forbidden(
                "This API key lacks the '\(scope.rawValue)' scope this request needs (its scopes: \(held)).", code: "insufficient_scope")
        }
    }

    /// Throws a 403 unless this key may serve `model` (a worker key's model patterns).
    package func requireModel(_ model: String) throws(SpoolError) {
        guard ModelPattern.allows(models, model: model) else {
            throw .forbidden(
                "This API key serves only the models \((models ?? []).joined(separator: ", ")); '\(model)' is not one of them.",
                code: "model_not_allowed")
        }
    }
}

extension Caller {
    /// Throws a 403 unless this key serves the job's model. Keys without model patterns (most)
    /// cost nothing; an unknown job is left to the write, which answers 404.
    func requireModel(ofJob requestID: UUID, store: Store, logger: Logger) async throws {
        guard models != nil else { return }
        guard let model = try await store.jobs.model(of: requestID, on: store.client, logger: logger) else { return }
        try requireModel(model)
    }
}

/// Refuses, with 403, a request whose key lacks the scope of the routes it guards. Attached to
/// route groups (not matched on paths), so it applies to exactly the routes the router chose.
struct RequireScope: RouterMiddleware {
    typealias Context = BrokerRequestContext
    let scope: KeyScope

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        try context.caller.require(scope)
        return try await next(request, context)
    }
}

/// The per-request context of the broker's router.
package struct BrokerRequestContext: RequestContext {
    package var coreContext: CoreRequestContextStorage
    /// Set by ``AuthMiddleware`` before any route runs.
    package var caller: Caller = .anonymous
    /// The request's connection: a long-poll watches it to notice a client that hung up.
    let channel: (any Channel)?

    package init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
