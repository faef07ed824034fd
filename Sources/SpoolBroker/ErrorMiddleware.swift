import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import PostgresNIO
import SpoolCore

/// Maps every error to HTTP in one place: a status and a JSON body in the shape of Together's
/// `QueueError`. Nothing leaves the broker as an empty or HTML error.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BrokerRequestContext
    let maxBodyBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let fal = request.uri.path.hasPrefix("/\(FalRoutes.prefix)/")
        do {
            return try await next(request, context)
        } catch let error as SpoolError {
            return Self.response(for: error, fal: fal)
        } catch is NIOTooManyBytesError {
            return Self.response(for: .payloadTooLarge(limit: maxBodyBytes), fal: fal)
        } catch let error as HTTPError {
            return Self.response(for: Self.translate(error, request: request), fal: fal)
        } catch let error as HTTPParserError {
            // The client hung up or stalled mid-body (or sent what is not HTTP): its own doing.
            context.logger.debug("a request's body ended early", metadata: ["error": "\(error)", "path": "\(request.uri.path)"])
            return Self.response(
                for: .invalidRequest("The request ended before its body did; nothing was stored.", code: "request_incomplete"), fal: fal)
        } catch let error as PSQLError where Self.refusedValue(error) != nil {
            // The database refused a value this request carried: the sender's error, not the broker's.
            context.logger.notice("the database refused a request's value", metadata: ["error": "\(String(reflecting: error))"])
            return Self.response(for: Self.refusedValue(error)!, fal: fal)
        } catch {
            context.logger.error(
                "request failed", metadata: ["error": "\(String(reflecting: error))", "path": "\(request.uri.path)"])
            return Self.response(for: .internalError(), fal: fal)
        }
    }

    static func translate(_ error: HTTPError, request: Request) -> SpoolError {
        switch error.status.code {
        case 404: .notFound("No route \(request.method) \(request.uri.path) on this broker.", code: "unknown_route")
        case 405: .methodNotAllowed(method: "\(request.method)", path: request.uri.path, allowed: [])
        case 413: .payloadTooLarge(limit: 0)
        case 400..<500: .invalidRequest(error.body ?? "The request is not valid.")
        default: .internalError()
        }
    }

    /// A 400 for a statement PostgreSQL refused because of a value it was given (data exceptions,
    /// constraint violations, size limits), or nil for any other failure (those are the broker's).
    static func refusedValue(_ error: PSQLError) -> SpoolError? {
        guard error.refusesAValue else { return nil }
        let message = error.serverInfo?[.message] ?? "a value is out of range"
        return .invalidRequest("PostgreSQL refused a value in this request: \(message).", code: "invalid_value")
    }

    /// The error as JSON in Together's `QueueError` shape; under /fal also with fal's `detail`.
    static func response(for error: SpoolError, fal: Bool = false) -> Response {
        var headers = HTTPFields()
        // Stainless-generated SDKs (together) retry 409s unless told not to; a conflict will not go away.
        if error.httpStatus == 409 { headers[.xShouldRetry] = "false" }
        if let seconds = error.retryAfterSeconds { headers[.retryAfter] = String(seconds) }
        // A 405 names the methods the path answers (RFC 9110): an empty Allow says none.
        if error.httpStatus == 405 { headers[.allow] = error.allowedMethods.joined(separator: ", ") }
        guard fal, case .object(var members) = error.body else {
            return JSONResponse.make(error.body, status: .init(code: error.httpStatus), headers: headers)
        }
        members["detail"] = .string(error.message)
        // fal's clients retry every 409; a conflict will not go away, so it is a 422 there.
        return JSONResponse.make(JSONValue.object(members), status: .init(code: error.httpStatus == 409 ? 422 : error.httpStatus), headers: headers)
    }
}

/// JSON responses with compact, slash-preserving encoding.
enum JSONResponse {
    /// An answer that writes itself (a JSONValue, or a type with the hand-written encoding).
    static func make(_ value: some JSONValueEncodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        make(bytes: ByteBuffer(bytes: value.jsonValue.jsonBytes), status: status, headers: headers)
    }

    /// An answer of a type that has only Codable; a failure to encode is thrown (a 500), never an empty 200.
    static func make(encoding value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) throws -> Response {
        let encoder = JSONEncoder()
        // Sorted: the same answer is the same bytes (another tenant's 404 is an unknown id's, byte for byte).
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return make(bytes: ByteBuffer(bytes: try encoder.encode(value)), status: status, headers: headers)
    }

    private static func make(bytes: ByteBuffer, status: HTTPResponse.Status, headers: HTTPFields) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: bytes))
    }
}
