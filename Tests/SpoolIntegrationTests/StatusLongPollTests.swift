import Foundation
import HTTPTypes
import SpoolCore
import Testing

/// Status reads for polling clients: a weak ETag answered 304, and `wait=N` answered at the job's next change.
@Suite struct StatusLongPollTests {
    static let ifNoneMatch = HTTPField.Name("If-None-Match")!

    /// On a connection of its own: the test client's one connection stays free while a poll waits.
    func status(_ broker: BrokerClient, _ model: String, _ id: String, query: String = "", etag: String? = nil) async throws -> Answer {
        let model = model.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? model
        return try await HTTP.get(
            broker.baseURL + "/v1/queue/status?model=\(model)&request_id=\(id)\(query)", headers: etag.map { [("If-None-Match", $0)] } ?? [])
    }

    @Test func anUnchangedJobIsA304AndItsQueuePositionIsNotAChange() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let first = try await broker.submit(model: model)
            let second = try await broker.submit(model: model)
            let answer = try await status(broker, model, second)
            #expect(answer.status == 200 && answer["queue_position"] == 1)
            let etag = try #require(answer.headers[.eTag])
            #expect(etag.hasPrefix("W/\""))

            let again = try await status(broker, model, second, etag: etag)
            #expect(again.status == 304 && again.json == .null, "no body")
            #expect(again.headers[.eTag] == etag)
            // The job ahead starts: the second job's position moves, the job itself does not.
            #expect(try await broker.lease(models: [model]).first?.objectValue?["request_id"] == .string(first))
            #expect(try await status(broker, model, second, etag: etag).status == 304)
            #expect(try await status(broker, model, second)["queue_position"] == 0)
            // It starts: a change.
            _ = try await broker.lease(models: [model])
            let started = try await status(broker, model, second, etag: etag)
            #expect(started.status == 200 && started["status"] == "running")
            #expect(started.headers[.eTag] != etag)
            // A list of tags, and the strong form of the same tag, match too (weak comparison).
            let current = try #require(started.headers[.eTag])
            #expect(try await status(broker, model, second, etag: "\"nope\", \(current.dropFirst(2))").status == 304)
        }
    }

    @Test func aLongPollAnswersAtTheJobsNextChange() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let pending = try await status(broker, model, id)
            let etag = try #require(pending.headers[.eTag])

            // Started while the poll waits: it answers with the running job, long before its 45 s are up.
            let began = ContinuousClock.now
            async let polled = status(broker, model, id, query: "&wait=45", etag: etag)
            try await eventually("the poll waits") { broker.openStreams() == 1 }
            let job = try #require(try await broker.lease(models: [model]).first)
            let running = try await polled
            #expect(running.status == 200 && running["status"] == "running", "\(running.json)")
            #expect(ContinuousClock.now - began < .seconds(25), "answered by the change, not at the end of its wait")

            // A heartbeat that changes nothing is not a change; progress is.
            let runningTag = try #require(running.headers[.eTag])
            async let progressed = status(broker, model, id, query: "&wait=45", etag: runningTag)
            try await eventually("the poll waits") { broker.openStreams() == 1 }
            #expect(try await broker.write("heartbeat", job: job).status == 200)
            #expect(try await broker.write("heartbeat", job: job, ["info": ["progress": 0.5]]).status == 200)
            let withProgress = try await progressed
            #expect(withProgress["info"]?.objectValue?["progress"] == 0.5, "\(withProgress.json)")

            // A finished job answers at once; a client that has the current state and nothing changes gets 304 at the end of its wait.
            #expect(try await broker.write("complete", job: job, ["outputs": ["ok": true]]).status == 200)
            let done = try await status(broker, model, id, query: "&wait=45")
            #expect(done["status"] == "done")
            let doneTag = try #require(done.headers[.eTag])
            #expect(try await status(broker, model, id, query: "&wait=45", etag: doneTag).status == 304)
        }
    }

    @Test func aWaitWithNothingChangingEndsWithTheSameState() async throws {
        try await withTestBroker { broker in
            let model = uniqueModel()
            let id = try await broker.submit(model: model)
            let pending = try await status(broker, model, id)
            let etag = try #require(pending.headers[.eTag])
            let unchanged = try await status(broker, model, id, query: "&wait=1", etag: etag)
            #expect(unchanged.status == 304)
            let plain = try await status(broker, model, id, query: "&wait=1")
            #expect(plain.status == 200 && plain["status"] == "pending" && plain.headers[.eTag] == etag)
            // An outdated tag is answered at once with the current state.
            let stale = try await status(broker, model, id, query: "&wait=45", etag: "W/\"stale\"")
            #expect(stale.status == 200 && stale.headers[.eTag] == etag)

            for bad in ["abc", "-1", "51", "1.5"] {
                let refused = try await status(broker, model, id, query: "&wait=\(bad)")
                #expect(refused.status == 400 && refused["param"] == "wait", "wait=\(bad)")
            }
        }
    }
}
