/// An error a client sees: an HTTP status and a body in the shape of Together's `QueueError`.
///
/// A struct over a private code enum, so cases can be added without breaking users.
public struct SpoolError: Error, Sendable, Equatable, CustomStringConvertible {
    private enum Kind: Sendable, Equatable {
        case invalidRequest, unauthorized, forbidden, notFound, methodNotAllowed, conflict, payloadTooLarge, unsupportedMediaType
        case tooManyRequests, internalError
    }

    private let kind: Kind
    /// A sentence that says what went wrong and what to fix; safe to show a user.
    public let message: String
    /// A machine-readable code, such as `missing_field`.
    public let code: String
    /// The request parameter at fault, if one is.
    public let param: String?
    /// Extra members of the error body (for example a job's current status).
    public let extra: [String: JSONValue]
    /// Seconds to wait before trying again (`Retry-After`), for a 429.
    public let retryAfterSeconds: Int?
    /// The methods the path answers (`Allow`), for a 405.
    public let allowedMethods: [String]

    private init(
        _ kind: Kind, _ message: String, code: String, param: String?, extra: [String: JSONValue] = [:], retryAfterSeconds: Int? = nil,
        allowedMethods: [String] = []
    ) {
        self.kind = kind
        self.message = message
        self.code = code
        self.param = param
        self.extra = extra
        self.retryAfterSeconds = retryAfterSeconds
        self.allowedMethods = allowedMethods
    }

    /// 400: the request is malformed or a field is missing or of the wrong type.
    public static func invalidRequest(_ message: String, code: String = "invalid_request", param: String? = nil) -> SpoolError {
        SpoolError(.invalidRequest, message, code: code, param: param)
    }

    /// 401: no API key, or one the broker does not know.
    public static func unauthorized(_ message: String) -> SpoolError {
        SpoolError(.unauthorized, message, code: "invalid_api_key", param: nil)
    }

    /// 403: the request is understood but refused here (for example a Host an open broker does not serve).
    public static func forbidden(_ message: String, code: String) -> SpoolError {
        SpoolError(.forbidden, message, code: code, param: nil)
    }

    /// 404: no such job, model or route.
    public static func notFound(_ message: String, code: String = "not_found", param: String? = nil) -> SpoolError {
        SpoolError(.notFound, message, code: code, param: param)
    }

    /// 405: the path exists, but not with this method; `allowed` are the methods it answers (`Allow`).
    public static func methodNotAllowed(method: String, path: String, allowed: [String]) -> SpoolError {
        SpoolError(
            .methodNotAllowed, "\(method) is not allowed on \(path): it answers \(allowed.joined(separator: ", ")).", code: "method_not_allowed",
            param: nil, allowedMethods: allowed)
    }

    /// 409: the request conflicts with the job's current state.
    public static func conflict(_ message: String, code: String, param: String? = nil, extra: [String: JSONValue] = [:]) -> SpoolError {
        SpoolError(.conflict, message, code: code, param: param, extra: extra)
    }

    /// 413: the body is larger than the broker accepts.
    public static func payloadTooLarge(limit: Int) -> SpoolError {
        SpoolError(.payloadTooLarge, "The request body is larger than this broker's limit of \(limit) bytes.", code: "payload_too_large", param: nil)
    }

    /// 413: something the request would store is larger than the broker keeps.
    public static func tooLarge(_ message: String, code: String, param: String? = nil) -> SpoolError {
        SpoolError(.payloadTooLarge, message, code: code, param: param)
    }

    /// 413: an uploaded file is larger than the broker accepts.
    public static func payloadTooLarge(limit: Int, what: String) -> SpoolError {
        SpoolError(
            .payloadTooLarge, "The \(what) is larger than this broker's limit of \(limit) bytes (--max-file-bytes); nothing was stored.",
            code: "payload_too_large", param: nil)
    }

    /// 415: the body is not in the media type the route reads (JSON routes read `application/json` only).
    public static func unsupportedMediaType(_ message: String) -> SpoolError {
        SpoolError(.unsupportedMediaType, message, code: "unsupported_media_type", param: "Content-Type")
    }

    /// 429: a limit is reached for now; `Retry-After` says when to try again.
    public static func tooManyRequests(
        _ message: String, code: String, retryAfterSeconds: Int, extra: [String: JSONValue] = [:]
    ) -> SpoolError {
        SpoolError(.tooManyRequests, message, code: code, param: nil, extra: extra, retryAfterSeconds: retryAfterSeconds)
    }

    /// 500: something failed inside the broker; the details are in its log, not here.
    public static func internalError(_ message: String = "The broker failed to handle this request; see its log.") -> SpoolError {
        SpoolError(.internalError, message, code: "internal_error", param: nil)
    }

    /// The same error blamed on one job of a bulk submit: the message says which, `param` is
    /// `[index].field`, and the body carries `index`.
    public func atJob(_ index: Int) -> SpoolError {
        var extra = self.extra
        extra["index"] = .int(Int64(index))
        return SpoolError(
            kind, "Job \(index) of the array: \(message)", code: code, param: "[\(index)]" + (param.map { ".\($0)" } ?? ""), extra: extra,
            retryAfterSeconds: retryAfterSeconds, allowedMethods: allowedMethods)
    }

    /// The HTTP status code for this error.
    public var httpStatus: Int {
        switch kind {
        case .invalidRequest: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .methodNotAllowed: 405
        case .conflict: 409
        case .payloadTooLarge: 413
        case .unsupportedMediaType: 415
        case .tooManyRequests: 429
        case .internalError: 500
        }
    }

    /// The category in Together's vocabulary.
    public var type: String {
        switch kind {
        case .invalidRequest: "invalid_request_error"
        case .unauthorized: "authentication_error"
        case .forbidden: "permission_error"
        case .notFound: "not_found_error"
        case .conflict: "conflict_error"
        case .methodNotAllowed, .payloadTooLarge, .unsupportedMediaType: "invalid_request_error"
        case .tooManyRequests: "rate_limit_error"
        case .internalError: "internal_error"
        }
    }

    /// The JSON body: `{"message", "type", "code", "param"}` plus any extra members.
    public var body: JSONValue {
        var members = extra
        members["message"] = .string(message)
        members["type"] = .string(type)
        members["code"] = .string(code)
        members["param"] = param.map(JSONValue.string) ?? .null
        return .object(members)
    }

    public var description: String { "\(httpStatus) \(code): \(message)" }
}
