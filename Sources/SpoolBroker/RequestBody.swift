import Hummingbird
import SpoolCore

extension Request {
    /// Reads and parses the body, refusing bodies over `limit` (413) and anything but JSON PostgreSQL can store (400).
    func jsonBody(limit: Int) async throws -> JSONValue {
        if let length = headers[.contentLength].flatMap(Int.init), length > limit {
            throw SpoolError.payloadTooLarge(limit: limit)
        }
        let buffer = try await body.collect(upTo: limit)
        guard buffer.readableBytes > 0 else {
            throw SpoolError.invalidRequest("The request body is empty; send a JSON object.", code: "invalid_body")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(buffer.readableBytesView)
        } catch {
            throw SpoolError.invalidRequest("The request body is not valid JSON.", code: "invalid_json")
        }
        // jsonb refuses \u0000; refused here it is a clear 400 instead of a database error.
        guard !json.containsNUL else {
            throw SpoolError.invalidRequest(
                "The request body contains a NUL character (\\u0000), which PostgreSQL cannot store; remove or escape it.",
                code: "invalid_json")
        }
        return json
    }

    /// The query string as a JSON object of strings, validated like a body.
    func queryJSON() throws -> JSONValue {
        var members: [String: JSONValue] = [:]
        for (name, value) in uri.queryParameters {
            members[String(name)] = .string(String(value))
        }
        let json = JSONValue.object(members)
        guard !json.containsNUL else {
            throw SpoolError.invalidRequest("The query string contains a NUL character (%00).", code: "invalid_query")
        }
        return json
    }
}
