import Hummingbird
import NIOCore

/// Who made a request, once the auth middleware has checked its key.
public struct Caller: Sendable, Equatable {
    /// A stable id (never the key): jobs and idempotency keys are recorded under it.
    public var id: String
    /// Room for scoped keys: client, worker, admin.
    public var scopes: [String]

    /// The caller of an open broker (no API keys configured).
    public static let anonymous = Caller(id: "anonymous", scopes: ["client", "worker", "admin"])
}

/// The per-request context of the broker's router.
public struct BrokerRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// Set by ``AuthMiddleware`` before any route runs.
    public var caller: Caller = .anonymous
    /// The request's connection: a long-poll watches it to notice a client that hung up.
    let channel: (any Channel)?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }
}
