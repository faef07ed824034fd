import AsyncHTTPClient
import Foundation
import HTTPTypes
import NIOCore
import NIOHTTP1
import SpoolCore

/// Plain HTTP to broker processes, through AsyncHTTPClient.
enum HTTP {
    static func get(_ url: String, headers: [(String, String)] = []) async throws -> Answer {
        try await send(.GET, url, body: nil, headers: headers)
    }

    static func post(_ url: String, _ body: JSONValue, headers: [(String, String)] = []) async throws -> Answer {
        try await send(.POST, url, body: body.jsonText, headers: headers)
    }

    static func submit(
        broker: BrokerProcess, model: String, payload: JSONValue = ["n": 1], headers: [(String, String)] = []
    ) async throws -> String {
        let answer = try await post(broker.baseURL + "/v1/queue/submit", ["model": .string(model), "payload": payload], headers: headers)
        guard let id = answer["requestId"]?.stringValue else { throw TestFailure("submit failed: \(answer.status) \(answer.json)") }
        return id
    }

    static func status(broker: BrokerProcess, model: String, requestID: String) async throws -> Answer {
        let model = model.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? model
        return try await get(broker.baseURL + "/v1/queue/status?model=\(model)&request_id=\(requestID)")
    }

    /// A GET answered with text, such as /metrics.
    static func text(_ url: String, headers: [(String, String)] = []) async throws -> String {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        return String(buffer: try await response.body.collect(upTo: 16 << 20))
    }

    /// `contentType` is sent with a body; nil sends the body with whatever `headers` say (or nothing).
    static func send(
        _ method: HTTPMethod, _ url: String, body: String?, headers: [(String, String)], contentType: String? = "application/json"
    ) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        request.method = method
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            if let contentType { request.headers.add(name: "Content-Type", value: contentType) }
            request.body = .bytes(ByteBuffer(string: body))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        let json = bytes.readableBytes == 0 ? JSONValue.null : try JSONValue.parse(bytes.readableBytesView)
        var fields = HTTPFields()
        for (name, value) in response.headers { if let name = HTTPField.Name(name) { fields.append(.init(name: name, value: value)) } }
        return Answer(status: Int(response.status.code), headers: fields, json: json)
    }
}
