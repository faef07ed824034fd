import HTTPTypes
@_spi(Internal) import Hummingbird
import SpoolCore

/// Records the method of every route added through it (then adds the route to `router`), so a
/// request whose path is a route's but whose method is not can be answered 405 with `Allow`
/// instead of the router's 404.
///
/// Register routes on groups made from it (`routes.group()`), not on the router itself.
final class RouteMethodRecorder<Context: RequestContext>: RouterMethods {
    let router: Router<Context>
    /// Each route path's methods, by the path's description (`/v1/files/{id}`).
    private var methods: [String: (path: RouterPath, methods: Set<HTTPRequest.Method>)] = [:]
    /// Methods a catch-all route narrows further by the path it is asked for.
    private var narrowers: [String: @Sendable (Substring) -> [HTTPRequest.Method]] = [:]

    init(_ router: Router<Context>) {
        self.router = router
    }

    @discardableResult func on<Responder: HTTPResponder>(
        _ path: RouterPath, method: HTTPRequest.Method, responder: Responder
    ) -> Self where Responder.Context == Context {
        router.on(path, method: method, responder: responder)
        methods[path.description, default: (path, [])].methods.insert(method)
        return self
    }

    @discardableResult func add(middleware: any MiddlewareProtocol<Request, Response, Context>) -> Self {
        router.add(middleware: middleware)
        return self
    }

    /// For a catch-all route that reads the path itself (RunPod's `/v2/**`): `allowed` says which
    /// methods a path under it answers; none makes it a 404.
    func narrow(_ path: RouterPath, by allowed: @escaping @Sendable (Substring) -> [HTTPRequest.Method]) {
        narrowers[path.description] = allowed
    }

    /// The routes recorded so far, resolved the way the router resolves them.
    func allowedMethods() -> AllowedMethods {
        let builder = RouterPathTrieBuilder<AllowedMethods.Route>()
        for (description, entry) in methods {
            let route = AllowedMethods.Route(
                methods: entry.methods.map(\.rawValue).sorted(), narrow: narrowers[description])
            builder.addEntry(entry.path, value: route)
        }
        return AllowedMethods(trie: builder.build())
    }
}

/// The methods each route path answers.
struct AllowedMethods: Sendable {
    struct Route: Sendable {
        let methods: [String]
        let narrow: (@Sendable (Substring) -> [HTTPRequest.Method])?
    }

    let trie: RouterTrie<Route>

    /// The methods `path` answers, sorted; empty when no route has the path.
    func methods(for path: String) -> [String] {
        guard let (route, _) = trie.resolve(path) else { return [] }
        guard let narrow = route.narrow else { return route.methods }
        return narrow(path[...]).map(\.rawValue).sorted()
    }
}

/// Answers 405 with `Allow` for a path that has routes, none of them for the request's method;
/// a path with no route stays the router's 404. Added to the router after every route, so it
/// wraps the router's not-found answer only (it adds no frame to a matched request).
struct MethodNotAllowedMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowed: AllowedMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let methods = allowed.methods(for: request.uri.path)
        guard !methods.isEmpty, !methods.contains(request.method.rawValue) else { return try await next(request, context) }
        throw SpoolError.methodNotAllowed(method: request.method.rawValue, path: request.uri.path, allowed: methods)
    }
}
