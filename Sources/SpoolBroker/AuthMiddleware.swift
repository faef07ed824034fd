import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import SpoolCore
import SpoolStore

/// Checks `Authorization: Bearer <key>` (fal's `Key <key>` too) against the configured keys and the
/// `api_keys` table. Keys are compared by SHA-256 hash; the keys themselves are never kept.
package final class Authenticator: Sendable {
    private let configured: [String: Caller]
    private let store: Store
    /// Table lookups are cached briefly so a key costs one query per minute, not one per request;
    /// a change to the keys (NOTIFY) empties the cache on every replica at once.
    private let cache = NIOLockedValueBox<[String: (caller: Caller, until: ContinuousClock.Instant)]>([:])
    /// Keys the table does not know, remembered briefly so a client retrying a bad key costs no
    /// query per request. A key created meanwhile clears it (NOTIFY).
    private let unknown = NIOLockedValueBox<[String: ContinuousClock.Instant]>([:])
    private let open = NIOLockedValueBox(false)
    static let cacheLifetime: Duration = .seconds(60)
    static let unknownLifetime: Duration = .seconds(5)
    static let cacheLimit = 10_000

    init(configuredKeys: [String], store: Store) {
        var configured: [String: Caller] = [:]
        for key in configuredKeys {
            let hash = APIKeyHash.of(key)
            configured[hash] = Caller(id: "cfg_" + hash.prefix(12), scopes: Set(KeyScope.allCases))
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

    /// The keys changed (on any replica, or with `spool-broker keys create`): forget cached
    /// lookups, and close an open broker once a key exists. A broker never opens while running:
    /// revoking every key leaves it closed until a restart decides again.
    func keysChanged(logger: Logger) async throws {
        cache.withLockedValue { $0.removeAll() }
        unknown.withLockedValue { $0.removeAll() }
        guard isOpen else { return }
        let live = try await store.apiKeys.countLive(on: store.client, logger: logger)
        guard live > 0 else { return }
        open.withLockedValue { $0 = false }
        logger.notice("an API key now exists: the broker requires keys from now on", metadata: ["keys": "\(live)"])
    }

    /// The caller that `authorization` names, or a 401 that says what is wrong.
    ///
    /// `bareKeyAllowed`: the header may also be the key alone, as RunPod's workers send it.
    func authenticate(authorization: String?, bareKeyAllowed: Bool = false, logger: Logger) async throws -> Caller {
        if isOpen { return .anonymous }
        guard let authorization, !authorization.isEmpty else {
            throw SpoolError.unauthorized("This broker requires an API key: send 'Authorization: Bearer <key>'.")
        }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        let key: Substring
        if parts.count == 2, ["bearer", "key"].contains(parts[0].lowercased()) {
            key = parts[1]
        } else if bareKeyAllowed, parts.count == 1 {
            key = parts[0]
        } else {
            throw SpoolError.unauthorized("The Authorization header must be 'Bearer <key>'.")
        }
        let hash = APIKeyHash.of(String(key).trimmingCharacters(in: .whitespaces))
        if let caller = configured[hash] { return caller }
        let now = ContinuousClock.now
        if let cached = cache.withLockedValue({ $0[hash] }), cached.until > now {
            // An expiry passes on its own, with no NOTIFY: checked on every use.
            if let expiresAt = cached.caller.expiresAt, expiresAt <= Date() { throw Self.invalidKey }
            return cached.caller
        }
        if let until = unknown.withLockedValue({ $0[hash] }), until > now { throw Self.invalidKey }
        guard let identity = try await store.apiKeys.find(keyHash: hash, on: store.client, logger: logger) else {
            unknown.withLockedValue { unknown in
                if unknown.count >= Self.cacheLimit { unknown.removeAll() }
                unknown[hash] = now + Self.unknownLifetime
            }
            throw Self.invalidKey
        }
        let caller = Caller(
            id: identity.id, scopes: Set(identity.scopes.compactMap(KeyScope.init(rawValue:))), tenant: identity.tenant,
            models: identity.models, expiresAt: identity.expiresAt)
        cache.withLockedValue { cache in
            if cache.count >= Self.cacheLimit { cache.removeAll() }
            cache[hash] = (caller, now + Self.cacheLifetime)
        }
        return caller
    }

    static let invalidKey = SpoolError.unauthorized(
        "The API key is not valid: it is unknown to this broker, has been revoked or has expired.")
}

/// Rejects requests without a valid key before any route runs, and records the caller. On an
/// open broker (no keys) it refuses what a browser sends from another site instead (one
/// middleware, not two: every frame it adds stays allocated for a whole long-poll).
struct AuthMiddleware: RouterMiddleware {
    typealias Context = BrokerRequestContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        if authenticator.isOpen { try OpenBrokerGuard.refuseBrowsers(request) }
        context.caller = try await authenticator.authenticate(
            authorization: request.headers[.authorization], bareKeyAllowed: request.uri.path.hasPrefix(RunPodRoutes.pathPrefix),
            logger: context.logger)
        return try await next(request, context)
    }
}

/// Keeps every replica's view of the keys current: a NOTIFY on `spool_keys` (sent by the
/// `api_keys` trigger) applies a change at once; while the broker is open, a poll every few
/// seconds covers a NOTIFY that was missed.
struct KeyWatcher: MaintenanceService {
    let authenticator: Authenticator
    let changes: Signal
    let schema: SchemaReadiness
    let logger: Logger
    static let openPollInterval: Duration = .seconds(2)

    static let passName = "key watch"

    func pass() async throws { try await authenticator.keysChanged(logger: logger) }

    /// A change's NOTIFY; an open broker also looks every few seconds, to close as soon as a key appears.
    func waitForNextPass() async throws {
        await changes.wait(timeout: authenticator.isOpen ? Self.openPollInterval : .seconds(3600))
        try Task.checkCancellation()
    }
}

/// What an open broker (no keys) refuses: requests a browser could send it from another site.
///
/// DNS rebinding shows as a Host that is not loopback; a cross-site form or fetch shows as an
/// Origin that is not loopback. Neither reaches a route; a broker with keys checks neither, since
/// a browser cannot attach the key cross-site.
struct OpenBrokerGuard: RouterMiddleware {
    typealias Context = BrokerRequestContext
    let authenticator: Authenticator

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if authenticator.isOpen { try Self.refuseBrowsers(request) }
        return try await next(request, context)
    }

    /// Throws a 403 for a request a browser sent to an open broker from another site.
    static func refuseBrowsers(_ request: Request) throws(SpoolError) {
        if let host = request.head.authority, !isLoopback(host: host) {
            throw .forbidden(
                "This broker has no API keys, so it serves loopback names only (Host 'localhost' or 127.0.0.1), not '\(host)'. Create a key to serve other names.",
                code: "host_not_allowed")
        }
        if let origin = request.headers[.origin], origin != "null", !isLoopback(origin: origin) {
            throw .forbidden(
                "This broker has no API keys, so it refuses requests from web pages of other sites (Origin '\(origin)').",
                code: "origin_not_allowed")
        }
        if request.headers[.secFetchSite] == "cross-site" {
            throw .forbidden("This broker has no API keys, so it refuses cross-site requests from browsers.", code: "origin_not_allowed")
        }
    }

    /// `localhost`, `127.x.x.x` or `[::1]`, with or without a port.
    static func isLoopback(host: String) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("[") {
            guard let end = name.firstIndex(of: "]") else { return false }
            name = String(name[name.index(after: name.startIndex)..<end])
            return name == "::1"
        }
        if let colon = name.lastIndex(of: ":") { name = String(name[..<colon]) }
        if name == "localhost" || name.hasSuffix(".localhost") { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// An origin such as `http://localhost:8080` whose host is loopback.
    static func isLoopback(origin: String) -> Bool {
        guard let schemeEnd = origin.range(of: "://") else { return false }
        let rest = origin[schemeEnd.upperBound...]
        let host = rest.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        return isLoopback(host: host)
    }
}
