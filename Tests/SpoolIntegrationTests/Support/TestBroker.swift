import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import SpoolCore

@testable import SpoolBroker

/// An answer from the broker: status, headers and the body parsed as JSON.
struct Answer {
    let status: Int
    let headers: HTTPFields
    let json: JSONValue

    subscript(_ member: String) -> JSONValue? { json.objectValue?[member] }
}

/// Runs a broker in-process on a real socket against the shared test database, or `database`.
func withTestBroker<Result: Sendable>(
    database: String? = nil,
    _ configure: (inout BrokerConfiguration) -> Void = { _ in },
    _ body: @Sendable (BrokerClient) async throws -> Result
) async throws -> Result {
    var configuration = BrokerConfiguration()
    configuration.port = 0
    configure(&configuration)
    let database = if let database { database } else { try await TestDatabase.migrated() }
    let connections = BrokerConnections()
    let app = try buildApplication(
        configuration, database: TestDatabase.configuration(database: database), logger: TestDatabase.logger, connections: connections)
    return try await app.test(.live) { client in
        try await body(BrokerClient(client: client, connections: connections))
    }
}

/// A thin JSON client over the test framework's HTTP client.
struct BrokerClient: Sendable {
    let client: any TestClientProtocol
    var apiKey: String?
    let connections: BrokerConnections

    init(client: any TestClientProtocol, apiKey: String? = nil, connections: BrokerConnections) {
        self.client = client
        self.apiKey = apiKey
        self.connections = connections
    }

    func withKey(_ key: String?) -> BrokerClient { BrokerClient(client: client, apiKey: key, connections: connections) }

    /// Lease requests waiting in this broker right now.
    func waitingLeases() -> Int { connections.waiters.count }

    /// Status streams open on this broker right now.
    func openStreams() -> Int { connections.watchers.count }

    /// The broker's own address, for clients other than the test framework's (which has one connection).
    var baseURL: String { "http://127.0.0.1:\(client.port ?? 0)" }

    func call(_ method: HTTPRequest.Method, _ uri: String, body: String? = nil, headers: HTTPFields = [:]) async throws -> Answer {
        var headers = headers
        if let apiKey { headers[.authorization] = "Bearer \(apiKey)" }
        if body != nil, headers[.contentType] == nil { headers[.contentType] = "application/json" }
        let response = try await client.executeRequest(uri: uri, method: method, headers: headers, body: body.map { ByteBuffer(string: $0) })
        let json = response.body.readableBytes == 0 ? JSONValue.null : try JSONValue.parse(response.body.readableBytesView)
        return Answer(status: Int(response.status.code), headers: response.headers, json: json)
    }

    func post(_ uri: String, _ body: JSONValue, headers: HTTPFields = [:]) async throws -> Answer {
        try await call(.post, uri, body: body.jsonText, headers: headers)
    }

    /// Submits and returns the request id.
    func submit(model: String, payload: JSONValue = ["prompt": "x"], priority: Int64 = 0, info: JSONValue = [:]) async throws -> String {
        let answer = try await post("/v1/queue/submit", ["model": .string(model), "payload": payload, "priority": .int(priority), "info": info])
        guard answer.status == 200, let id = answer["requestId"]?.stringValue else {
            throw TestFailure("submit failed: \(answer.status) \(answer.json)")
        }
        return id
    }

    func status(model: String, requestID: String) async throws -> Answer {
        try await call(.get, "/v1/queue/status?model=\(percentEncoded(model))&request_id=\(percentEncoded(requestID))")
    }

    func metrics(model: String) async throws -> Answer {
        try await call(.get, "/v1/queue/metrics?model=\(percentEncoded(model))")
    }

    private func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }
}

/// The worker protocol, spoken by hand.
extension BrokerClient {
    func lease(
        models: [String], worker: String = "test-worker", maxJobs: Int = 1, waitSeconds: Double = 0, leaseSeconds: Double = 30
    ) async throws -> [JSONValue] {
        let answer = try await post(
            "/v1/worker/lease",
            [
                "worker_id": .string(worker), "models": .array(models.map(JSONValue.string)), "max_jobs": .int(Int64(maxJobs)),
                "wait_seconds": .double(waitSeconds), "lease_seconds": .double(leaseSeconds),
            ])
        guard answer.status == 200, case .array(let jobs)? = answer["jobs"] else {
            throw TestFailure("lease failed: \(answer.status) \(answer.json)")
        }
        return jobs
    }

    /// POSTs `body` plus the job's lease token to `/v1/worker/jobs/{id}/{action}`.
    func write(_ action: String, job: JSONValue, _ body: [String: JSONValue] = [:]) async throws -> Answer {
        let id = job.objectValue?["request_id"]?.stringValue ?? ""
        var members = body
        members["lease_token"] = job.objectValue?["lease_token"] ?? .null
        return try await post("/v1/worker/jobs/\(id)/\(action)", .object(members))
    }
}
