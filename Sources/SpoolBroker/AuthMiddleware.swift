import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import SpoolCore
import SpoolStore

/// Checks `Authorization: Bearer <key>` (fal's `Key <key>` too) against the configured keys and the
/// `api_keys` table. Keys are compared by SHA-256 hash; the keys themselves are never kept.
public final class Authenticator: Sendable {
    private let configured: [String: Caller]
    private let store: SpoolStore
    /// Table lookups are cached briefly so a key costs one query per minute, not one per request.
    private let cache = NIOLockedValueBox<[String: (caller: Caller, until: ContinuousClock.Instant)]>([:])
    private let open = NIOLockedValueBox(false)
    static let cacheLifetime: Duration = .seconds(60)
    static let cacheLimit = 10_000

    init(configuredKeys: [String], store: SpoolStore) {
        var configured: [String: Caller] = [:]
        for key in configuredKeys {
            let hash = APIKeyHash.of(key)
            configured[hash] = Caller(id: "cfg_" + hash.prefix(12), scopes: ["client", "worker", "admin"])
        }
        self.configured = configured
        self.store = store
    }

    /// Decides at start whether the broker is open: no configured key and none in the table.
    func decideOpenness(liveTableKeys: Int) -> Bool {
        let isOpen = configured.isEmpty && liveTableKeys == 0
        open.withLockedValue { $0 = isOpen }
        return isOpen
    }

    var isOpen: Bool { open.withLockedValue { $0 } }

    /// The caller that `authorization` names, or a 401 that says what is wrong.
    func authenticate(authorization: String?, logger: Logger) async throws -> Caller {
        if isOpen { return .anonymous }
        guard let authorization, !authorization.isEmpty else {
            throw SpoolError.unauthorized("This broker requires an API key: send 'Authorization: Bearer <key>'.")
        }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, ["bearer", "key"].contains(parts[0].lowercased()) else {
            throw SpoolError.unauthorized("The Authorization header must be 'Bearer <key>'.")
        }
        let hash = APIKeyHash.of(String(parts[1]).trimmingCharacters(in: .whitespaces))
        if let caller = configured[hash] { return caller }
        let now = ContinuousClock.now
        if let cached = cache.withLockedValue({ $0[hash] }), cached.until > now { return cached.caller }
        guard let identity = try await store.apiKeys.find(keyHash: hash, on: store.client, logger: logger) else {
            throw SpoolError.unauthorized("The API key is not valid: it is unknown to this broker or has been revoked.")
        }
        let caller = Caller(id: identity.id, scopes: identity.scopes)
        cache.withLockedValue { cache in
            if cache.count >= Self.cacheLimit { cache.removeAll() }
            cache[hash] = (caller, now + Self.cacheLifetime)
        }
        return caller
    }
}

/// Rejects requests without a valid key before any route runs, and records the caller.
struct AuthMiddleware: RouterMiddleware {
    typealias Context = BrokerRequestContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        context.caller = try await authenticator.authenticate(authorization: request.headers[.authorization], logger: context.logger)
        return try await next(request, context)
    }
}
