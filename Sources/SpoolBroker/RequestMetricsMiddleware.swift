import HTTPTypes
import Hummingbird

/// Records every request's duration by route (the route's pattern, not the raw path), method and status.
struct RequestMetricsMiddleware: RouterMiddleware {
    typealias Context = BrokerRequestContext
    let metrics: BrokerMetrics
    /// Methods with series of their own; a client can send any token as a method.
    static let methods: Set<HTTPRequest.Method> = [.get, .head, .post, .put, .patch, .delete, .options]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        let response = try await next(request, context)
        let elapsed = ContinuousClock.now - start
        metrics.recordRequest(
            route: context.endpointPath ?? "unmatched", method: Self.methods.contains(request.method) ? request.method.rawValue : "other",
            status: Int(response.status.code),
            seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        return response
    }
}
