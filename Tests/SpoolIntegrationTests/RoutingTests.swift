import Foundation
import HTTPTypes
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolBroker

/// What the broker answers to a request no route takes: 405 with `Allow` for an existing path
/// asked with another method, 404 for a path it does not have; and a form field outside its
/// values refused before anything is kept.
@Suite struct RoutingTests {
    static let key = "routing-key-\(UUID().uuidString)"

    @Test func aWrongMethodOnAnExistingPathIs405WithAllow() async throws {
        try await withTestBroker({ $0.apiKeys = [Self.key] }) { anonymous in
            let broker = anonymous.withKey(Self.key)
            for (method, path, allow) in [
                (HTTPRequest.Method.delete, "/v1/queue/submit", "POST"),
                (.put, "/v1/queue/status", "GET"),
                (.patch, "/v1/files", "GET, POST"),
                (.post, "/v1/files/file-x", "DELETE, GET"),
                (.get, "/v1/worker/jobs/\(UUID())/complete", "POST"),
                (.options, "/healthz", "GET"),
                // The catch-alls answer by what the path names.
                (.get, "/v2/acme/sd/run", "POST"),
                (.put, "/v2/acme/status/x", "GET"),
                (.get, "/fal/acme/app/some/path", "POST"),
            ] {
                let answer = try await broker.call(method, path)
                #expect(answer.status == 405, "\(method) \(path): \(answer.status) \(answer.json)")
                #expect(answer.headers[.allow] == allow, "\(method) \(path)")
                #expect(answer.headers[.contentType] == "application/json")
                #expect(answer["code"] == "method_not_allowed" && answer["type"] == "invalid_request_error", "\(answer.json)")
                #expect(answer["message"]?.stringValue?.contains(allow) == true)
            }
            // Under /fal the body also carries fal's `detail`.
            let fal = try await broker.call(.delete, "/fal/acme/app")
            #expect(fal.status == 405 && fal.headers[.allow] == "POST" && fal["detail"]?.stringValue != nil, "\(fal.json)")
            // Without a key too: the method is wrong whoever asks, and the path's methods are public (the OpenAPI document).
            let unauthenticated = try await anonymous.call(.delete, "/v1/queue/submit")
            #expect(unauthenticated.status == 405 && unauthenticated.headers[.allow] == "POST")
            // The right method still needs the key.
            #expect(try await anonymous.call(.get, "/v1/queue/status?model=m&request_id=\(UUID())").status == 401)
        }
    }

    @Test func anUnknownPathIs404() async throws {
        try await withTestBroker({ $0.apiKeys = [Self.key] }) { anonymous in
            let broker = anonymous.withKey(Self.key)
            for (method, path) in [
                (HTTPRequest.Method.get, "/v1/nothing-here"), (.post, "/v1/queue"), (.delete, "/v1/queue/submit/extra"),
                (.get, "/v2/acme/no-such-action"), (.put, "/v2/acme/no-such-action"),
            ] {
                let answer = try await broker.call(method, path)
                #expect(answer.status == 404, "\(method) \(path): \(answer.status) \(answer.json)")
                #expect(answer.headers[.allow] == nil)
                #expect(answer["code"] == "unknown_route", "\(answer.json)")
            }
        }
    }

    @Test func aFileUploadWithAnUnknownFileTypeIs400AndStoresNothing() async throws {
        try await withTestBroker { broker in
            let filename = "\(uniqueModel("file-type")).jsonl"
            let boundary = "b-\(UUID().uuidString)"
            func form(fileType: String, withFile: Bool) -> String {
                var body =
                    "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n"
                    + "--\(boundary)\r\nContent-Disposition: form-data; name=\"file_name\"\r\n\r\n\(filename)\r\n"
                if withFile {
                    body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(filename)\"\r\n\r\n{\"a\": 1}\n\r\n"
                }
                // After the file part: the content is already streamed in when the field is read.
                body += "--\(boundary)\r\nContent-Disposition: form-data; name=\"file_type\"\r\n\r\n\(fileType)\r\n--\(boundary)--\r\n"
                return body
            }
            let headers: HTTPFields = [.contentType: "multipart/form-data; boundary=\(boundary)"]
            for withFile in [true, false] {
                for fileType in ["xlsx", "", "JSONL"] {
                    let answer = try await broker.call(.post, "/v1/files", body: form(fileType: fileType, withFile: withFile), headers: headers)
                    #expect(answer.status == 400, "\(fileType) \(withFile): \(answer.status) \(answer.json)")
                    #expect(answer["param"] == "file_type" && answer["code"] == "invalid_field" && answer["type"] == "invalid_request_error")
                }
            }
            let stored = try await TestDatabase.withStore { store in
                try await store.client.query("SELECT count(*)::int FROM files WHERE filename = \(filename)", logger: TestDatabase.logger)
                    .collect().first?.decode(Int.self)
            }
            #expect(stored == 0)
            // A declared type it knows is kept.
            let good = try await broker.call(.post, "/v1/files", body: form(fileType: "csv", withFile: true), headers: headers)
            #expect(good.status == 200 && good["FileType"] == "csv", "\(good.json)")
        }
    }
}
