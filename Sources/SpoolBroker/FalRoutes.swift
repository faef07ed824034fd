import Foundation
import HTTPTypes
import Hummingbird
import Logging
import SpoolCore
import SpoolStore

/// fal's queue API under `/fal`, so `fal-client` works with `FAL_QUEUE_RUN_HOST=<host>:<port>/fal`.
///
/// The app id `{owner}/{app}` is the model workers serve; a submit's further path is the job's
/// `path`. The jobs are the same jobs the Together API sees.
struct FalRoutes: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    let submitter: Submitter
    let views: JobViews
    let stream: StatusStream
    let metrics: BrokerMetrics

    static let prefix = "fal"

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        let fal = router.group(RouterPath(Self.prefix))
        fal.post(":owner/:app", use: submit)
        fal.post(":owner/:app/**", use: submit)
        fal.get(":owner/:app/requests/:request_id/status", use: status)
        fal.get(":owner/:app/requests/:request_id/status/stream", use: statusStream)
        fal.get(":owner/:app/requests/:request_id", use: result)
        fal.put(":owner/:app/requests/:request_id/cancel", use: cancel)
    }

    @Sendable func submit(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let model = try Self.model(context)
        let json = try await request.jsonBody(limit: configuration.maxBodyBytes)
        guard let arguments = json.objectValue else {
            throw SpoolError.invalidRequest("The request body must be a JSON object of arguments, not \(json.typeName).", code: "invalid_body")
        }
        let path = context.parameters.getCatchAll().joined(separator: "/")
        let submit = SubmitRequest(
            model: model, payload: arguments, priority: try FalHeaders.priority(request.headers[Self.header(FalHeaders.queuePriority)]),
            path: path.isEmpty ? nil : path,
            startTimeoutSeconds: try FalHeaders.startTimeout(request.headers[Self.header(FalHeaders.requestTimeout)]),
            webhookURL: request.uri.queryParameters.get("fal_webhook"), webhookFormat: .fal)
        let submitted = try await submitter.submit(submit, body: json, request: request, context: context)
        let id = submitted.requestID.uuidString.lowercased()
        let position =
            try await views.load(model: model, requestID: submitted.requestID, withLogs: false, caller: context.caller, logger: context.logger)?
            .position?.position ?? 0
        return JSONResponse.make(
            FalSubmitResponse(request_id: id, response_url: baseURL(request, model: model, requestID: id), queue_position: position),
            headers: Self.requestHeaders(id))
    }

    /// 202 until the request completes, then 200.
    @Sendable func status(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let (model, requestID) = try Self.job(context)
        guard
            let view = try await views.load(
                model: model, requestID: requestID, withLogs: request.wantsLogs, caller: context.caller, logger: context.logger)
        else { throw Self.notFound(requestID) }
        let id = requestID.uuidString.lowercased()
        let status = JobViews.fal(view, baseURL: baseURL(request, model: model, requestID: id))
        return JSONResponse.make(status, status: status.status == .completed ? .ok : .accepted, headers: Self.requestHeaders(id))
    }

    /// Server-Sent Events: one status per change, closed after COMPLETED.
    @Sendable func statusStream(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let (model, requestID) = try Self.job(context)
        guard
            try await store.jobs.find(
                model: model, requestID: requestID, tenant: context.caller.readableTenant, on: store.client, logger: context.logger) != nil
        else {
            throw Self.notFound(requestID)
        }
        let id = requestID.uuidString.lowercased()
        let base = baseURL(request, model: model, requestID: id)
        let withLogs = request.wantsLogs
        let logger = context.logger
        let caller = context.caller
        return stream.response(requestID: requestID, headers: Self.requestHeaders(id), logger: logger) {
            guard let view = try await views.load(model: model, requestID: requestID, withLogs: withLogs, caller: caller, logger: logger)
            else { return nil }
            let status = JobViews.fal(view, baseURL: base)
            return StatusStream.Frame(
                event: status.jsonValue, isFinal: status.status == .completed,
                isQueued: status.status == .inQueue)
        }
    }

    /// The outputs once completed; a clear error before that, or when the job failed.
    @Sendable func result(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let (model, requestID) = try Self.job(context)
        guard
            let job = try await store.jobs.find(
                model: model, requestID: requestID, tenant: context.caller.readableTenant, on: store.client, logger: context.logger)
        else {
            throw Self.notFound(requestID)
        }
        let id = requestID.uuidString.lowercased()
        var headers = Self.requestHeaders(id)
        switch job.status {
        case .done:
            return JSONResponse.make(JSONValue.object(job.outputs ?? [:]), headers: headers)
        case .pending, .running:
            let body: JSONValue = [
                "detail": "Request is still in progress.", "status": .string(job.status == .pending ? "IN_QUEUE" : "IN_PROGRESS"),
            ]
            return JSONResponse.make(body, status: .badRequest, headers: headers)
        case .failed, .canceled:
            let (error, errorType) = JobViews.falError(job)
            let body: JSONValue = ["detail": .string(error ?? "The request failed."), "error_type": .string(errorType ?? "runner_error")]
            if errorType == JobsTable.ErrorType.requestTimeout {
                // A user-set timeout: fal's clients do not retry a 504 that says so.
                headers[Self.header(FalHeaders.requestTimeoutType)] = "user"
                return JSONResponse.make(body, status: .gatewayTimeout, headers: headers)
            }
            return JSONResponse.make(body, status: job.status == .canceled ? .badRequest : .internalServerError, headers: headers)
        }
    }

    /// OK for a queued request (removed), CANCELLATION_REQUESTED for a running one (its worker is
    /// asked to stop), ALREADY_COMPLETED, NOT_FOUND.
    @Sendable func cancel(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let (model, requestID) = try Self.job(context)
        let headers = Self.requestHeaders(requestID.uuidString.lowercased())
        switch try await store.jobs.cancel(
            model: model, requestID: requestID, tenant: context.caller.readableTenant, stopRunning: true,
            graceSeconds: configuration.stopGraceSeconds, on: store.client,
            logger: context.logger)
        {
        case .canceled:
            metrics.count("canceled", model: model)
            return try JSONResponse.make(encoding: FalCancelResponse(status: "OK"), headers: headers)
        case .stopRequested:
            return try JSONResponse.make(encoding: FalCancelResponse(status: "CANCELLATION_REQUESTED"), status: .accepted, headers: headers)
        case .unchanged:
            return try JSONResponse.make(encoding: FalCancelResponse(status: "ALREADY_COMPLETED"), status: .badRequest, headers: headers)
        case .notFound:
            return try JSONResponse.make(encoding: FalCancelResponse(status: "NOT_FOUND"), status: .notFound, headers: headers)
        }
    }

    /// Where the request's URLs point: the broker's public URL, else the address the client used.
    func baseURL(_ request: Request, model: String, requestID: String) -> String {
        "\(configuration.publicRoot(request))/\(Self.prefix)/\(model)/requests/\(requestID)"
    }

    static func model(_ context: BrokerRequestContext) throws -> String {
        let owner = context.parameters.get("owner") ?? ""
        let app = context.parameters.get("app") ?? ""
        guard !owner.isEmpty, !app.isEmpty else {
            throw SpoolError.notFound("Name the app as /fal/{owner}/{app}.", code: "unknown_route")
        }
        return "\(owner)/\(app)"
    }

    static func job(_ context: BrokerRequestContext) throws -> (model: String, requestID: UUID) {
        let model = try model(context)
        let text = context.parameters.get("request_id") ?? ""
        guard let requestID = UUID(uuidString: text) else {
            throw SpoolError.notFound("Request '\(text)' not found: request ids are UUIDs.", code: "request_not_found", param: "request_id")
        }
        return (model, requestID)
    }

    static func notFound(_ requestID: UUID) -> SpoolError {
        .notFound("Request '\(requestID.uuidString.lowercased())' not found for this app.", code: "request_not_found", param: "request_id")
    }

    static func header(_ name: String) -> HTTPField.Name { HTTPField.Name(name)! }

    static func requestHeaders(_ requestID: String) -> HTTPFields {
        [header(FalHeaders.requestID): requestID]
    }
}
