import Foundation
import HTTPTypes
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolStore

/// `POST /v1/queue/submit` with an array: up to 1,000 jobs in one statement, all or none, ids in order.
@Suite struct BulkSubmitTests {
    static func jobs(_ model: String, _ count: Int, from start: Int = 0) -> [JSONValue] {
        (start..<start + count).map { ["model": .string(model), "payload": ["i": .int(Int64($0))]] }
    }

    @Test func aThousandJobsInOneRequestAreStoredInOrder() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let answer = try await broker.post("/v1/queue/submit", .array(Self.jobs(model, 1000)))
            #expect(answer.status == 200, "\(answer.json)")
            #expect(answer["object"] == "list")
            let data = try #require(answer["data"]?.arrayValue)
            let ids = data.compactMap { $0.objectValue?["requestId"]?.stringValue }
            #expect(ids.count == 1000 && Set(ids).count == 1000)
            #expect(data.allSatisfy { $0.objectValue?["replayed"] == false })
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 1000)
            // Each id names the job sent at its position.
            for index in [0, 499, 999] {
                #expect(try await broker.status(model: model, requestID: ids[index])["inputs"] == ["i": .int(Int64(index))])
            }
            // And they wait in the order sent: the claim takes them first to last.
            try await TestDatabase.withStore { store in
                let claimed = try await store.jobs.claim(
                    models: [model], limit: 1000, leaseSeconds: 30, maxRunSeconds: 3600, workerID: "w", on: store.client, logger: TestDatabase.logger)
                #expect(claimed.map { $0.requestID.uuidString.lowercased() } == ids)
            }
        }
    }

    @Test func oneBadJobRefusesTheWholeArrayAndNamesIt() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            var items = Self.jobs(model, 5)
            items[3] = ["payload": [:]]
            let missing = try await broker.post("/v1/queue/submit", .array(items))
            #expect(missing.status == 400 && missing["code"] == "missing_field" && missing["param"] == "[3].model", "\(missing.json)")
            #expect(missing["index"] == 3)
            #expect(missing["message"]?.stringValue?.hasPrefix("Job 3 of the array: ") == true)

            items[3] = "not an object"
            let notObject = try await broker.post("/v1/queue/submit", .array(items))
            #expect(notObject.status == 400 && notObject["param"] == "[3]", "\(notObject.json)")

            let tooMany = try await broker.post("/v1/queue/submit", .array(Self.jobs(model, 1001)))
            #expect(tooMany.status == 400 && tooMany["code"] == "too_many_jobs", "\(tooMany.json)")
            let empty = try await broker.post("/v1/queue/submit", [])
            #expect(empty.status == 400 && empty["code"] == "invalid_body")

            var repeated = Self.jobs(model, 3)
            for index in [0, 2] { repeated[index] = ["model": .string(model), "payload": [:], "idempotency_key": "same"] }
            let duplicate = try await broker.post("/v1/queue/submit", .array(repeated))
            #expect(duplicate.status == 400 && duplicate["code"] == "duplicate_idempotency_key" && duplicate["param"] == "[2].idempotency_key")

            let header: HTTPFields = [HTTPField.Name("Idempotency-Key")!: "whole"]
            let withHeader = try await broker.post("/v1/queue/submit", .array(Self.jobs(model, 2)), headers: header)
            #expect(withHeader.status == 400 && withHeader["param"] == "Idempotency-Key")

            var hooked = Self.jobs(model, 3)
            hooked[1] = ["model": .string(model), "payload": [:], "webhook_url": "https://example.com/hook"]
            let noSecret = try await broker.post("/v1/queue/submit", .array(hooked))
            #expect(noSecret.status == 400 && noSecret["code"] == "webhooks_disabled" && noSecret["param"] == "[1].webhook_url", "\(noSecret.json)")

            // Distinct receivers are capped: each is resolved before anything is stored.
            let manyHosts: [JSONValue] = (0..<17).map {
                ["model": .string(model), "payload": [:], "webhook_url": .string("https://h\($0).example.com/hook")]
            }
            let tooManyHosts = try await broker.post("/v1/queue/submit", .array(manyHosts))
            #expect(tooManyHosts.status == 400 && tooManyHosts["code"] == "too_many_webhook_hosts", "\(tooManyHosts.json)")

            #expect(try await broker.metrics(model: model)["messages_waiting"] == 0, "a refused array stores nothing")
        }
    }

    @Test func eachJobsIdempotencyKeyReplaysOnlyThatJob() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let (a, b, c) = ("a-\(UUID().uuidString)", "b-\(UUID().uuidString)", "c-\(UUID().uuidString)")
            let items: [JSONValue] = [
                ["model": .string(model), "payload": ["n": 1], "idempotency_key": .string(a)],
                ["model": .string(model), "payload": ["n": 2]],
                ["model": .string(model), "payload": ["n": 3], "idempotency_key": .string(b)],
            ]
            func ids(_ answer: Answer) -> [String] {
                answer["data"]?.arrayValue?.compactMap { $0.objectValue?["requestId"]?.stringValue } ?? []
            }
            let first = try await broker.post("/v1/queue/submit", .array(items))
            #expect(first.status == 200)
            let retry = try await broker.post("/v1/queue/submit", .array(items))
            #expect(retry.status == 200)
            #expect(ids(retry)[0] == ids(first)[0] && ids(retry)[2] == ids(first)[2], "keyed jobs replay")
            #expect(ids(retry)[1] != ids(first)[1], "the job without a key is new")
            #expect(retry["data"]?.arrayValue?.map { $0.objectValue?["replayed"] } == [true, false, true])
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 4)

            // One reused key refuses the array: the new job beside it and its key c are not stored.
            let conflicting: [JSONValue] = [
                ["model": .string(model), "payload": ["n": 9], "idempotency_key": .string(c)],
                ["model": .string(model), "payload": ["n": 99], "idempotency_key": .string(a)],
            ]
            let reused = try await broker.post("/v1/queue/submit", .array(conflicting))
            #expect(reused.status == 409 && reused["code"] == "idempotency_key_reused" && reused["param"] == "[1].idempotency_key", "\(reused.json)")
            #expect(try await broker.metrics(model: model)["messages_waiting"] == 4)
            let cAlone = try await broker.post("/v1/queue/submit", .array([conflicting[0]]))
            #expect(cAlone["data"]?.arrayValue?.first?.objectValue?["replayed"] == false, "key c was rolled back with the refused array")

            // The keys are the same keys as the header's: a job sent alone replays its bulk twin.
            let single = try await broker.post(
                "/v1/queue/submit", ["model": .string(model), "payload": ["n": 3]], headers: [HTTPField.Name("Idempotency-Key")!: b])
            #expect(single["requestId"] == .string(ids(first)[2]))
            #expect(single.headers[HTTPField.Name("Idempotent-Replayed")!] == "true")
        }
    }
}
