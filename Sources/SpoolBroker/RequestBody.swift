import Hummingbird
import SpoolCore

extension Request {
    /// Reads and parses the body, refusing bodies over `limit` (413), bodies not sent as
    /// `application/json` (415: a browser's cross-site form or `text/plain` POST is not JSON), and
    /// anything PostgreSQL would refuse or store differently (400).
    ///
    /// `formEncodedJSON` also accepts JSON sent as `application/x-www-form-urlencoded`: RunPod's
    /// workers send their results so, always with a key in the Authorization header.
    func jsonBody(limit: Int, formEncodedJSON: Bool = false) async throws -> JSONValue {
        if !formEncodedJSON || mediaType != "application/x-www-form-urlencoded" { try requireJSONContentType() }
        if let length = headers[.contentLength].flatMap(Int.init), length > limit {
            throw SpoolError.payloadTooLarge(limit: limit)
        }
        let buffer = try await body.collect(upTo: limit)
        guard buffer.readableBytes > 0 else {
            throw SpoolError.invalidRequest("The request body is empty; send a JSON object.", code: "invalid_body")
        }
        let json: JSONValue
        do {
            json = try JSONValue.parse(buffer.readableBytesView, strict: true)
        } catch let error as JSONSyntaxError {
            throw SpoolError.invalidRequest("The request body is not valid JSON: \(error.reason) (at byte \(error.offset)).", code: "invalid_json")
        }
        // jsonb refuses \u0000; refused here it is a clear 400 instead of a database error.
        guard !json.containsNUL else {
            throw SpoolError.invalidRequest(
                "The request body contains a NUL character (\\u0000), which PostgreSQL cannot store; remove or escape it.",
                code: "invalid_json")
        }
        return json
    }

    /// Refuses a body whose Content-Type is not JSON (`application/json`, or `application/…+json`).
    func requireJSONContentType() throws {
        let mediaType = self.mediaType
        guard mediaType == "application/json" || (mediaType.hasPrefix("application/") && mediaType.hasSuffix("+json")) else {
            throw SpoolError.unsupportedMediaType(
                mediaType.isEmpty
                    ? "Send the body as JSON with 'Content-Type: application/json'."
                    : "This route reads JSON: send 'Content-Type: application/json', not '\(mediaType)'.")
        }
    }

    /// The Content-Type without its parameters, lowercased; empty when absent.
    var mediaType: String {
        headers[.contentType]?.split(separator: ";", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces).lowercased() ?? ""
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

/// Text a client sent outside a JSON body (form fields, file names, query parameters), checked as
/// PostgreSQL will store it: valid UTF-8 without NUL, at most `maxBytes`.
enum ClientText {
    static func validated(_ bytes: some Collection<UInt8>, field: String, maxBytes: Int) throws(SpoolError) -> String {
        guard bytes.count <= maxBytes else {
            throw .invalidRequest("'\(field)' is longer than \(maxBytes) bytes.", code: "invalid_field", param: field)
        }
        guard let text = String(validating: Array(bytes), as: UTF8.self) else {
            throw .invalidRequest("'\(field)' is not valid UTF-8.", code: "invalid_field", param: field)
        }
        guard !bytes.contains(0) else {
            throw .invalidRequest("'\(field)' contains a NUL character, which PostgreSQL cannot store.", code: "invalid_field", param: field)
        }
        return text
    }

    static func validated(_ text: String, field: String, maxBytes: Int) throws(SpoolError) -> String {
        try validated(Array(text.utf8), field: field, maxBytes: maxBytes)
    }
}
