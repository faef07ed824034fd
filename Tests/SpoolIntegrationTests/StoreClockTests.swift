import Foundation
import PostgresNIO
import SpoolCore
import SpoolStore
import Testing

/// The time-based sweeps, with time moved by their `now` instead of slept through: each leaves what
/// is not yet due and takes what is, against a real PostgreSQL.
@Suite struct StoreClockTests {
    let logger = TestDatabase.logger

    func seconds(_ offset: Double) -> Date { Date() + offset }

    /// A store on a fresh database, and a model of its own.
    func withStore(_ body: (Store, PostgresClient, String) async throws -> Void) async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await TestDatabase.withClient(database: database) { client in
                try await body(Store(client: client), client, uniqueModel("clock"))
            }
        }
    }

    func status(of id: UUID, on client: PostgresClient) async throws -> (String, String?, String?) {
        try await client.query("SELECT status, stop_reason, error_type FROM jobs WHERE request_id = \(id)", logger: logger)
            .collect().first!.decode((String, String?, String?).self)
    }

    @Test func anExpiredLeaseIsRequeuedOnlyOnceItsTimeHasCome() async throws {
        try await withStore { store, client, model in
            let id = UUID()
            try await store.jobs.insert(SubmitRequest(model: model, payload: [:]), requestID: id, submittedBy: "t", on: client, logger: logger)
            let claimed = try await store.jobs.claim(
                models: [model], limit: 1, leaseSeconds: 60, maxRunSeconds: 600, workerID: "w", on: client, logger: logger)
            #expect(claimed.map(\.requestID) == [id])

            #expect(try await store.jobs.requeueExpiredLeases(retryLimit: 3, now: seconds(30), on: client, logger: logger).isEmpty)
            #expect(try await status(of: id, on: client).0 == "running")

            let requeued = try await store.jobs.requeueExpiredLeases(retryLimit: 3, now: seconds(61), on: client, logger: logger)
            #expect(requeued.map { "\($0.requestID) \($0.status) \($0.retries)" } == ["\(id) pending 1"])
            #expect(try await status(of: id, on: client).0 == "pending")
        }
    }

    @Test func runAndStartDeadlinesActWhenPassedAndNotBefore() async throws {
        try await withStore { store, client, model in
            let running = UUID()
            let waiting = UUID()
            try await store.jobs.insert(
                SubmitRequest(model: model, payload: [:]), requestID: running, submittedBy: "t", on: client, logger: logger)
            _ = try await store.jobs.claim(
                models: [model], limit: 1, leaseSeconds: 3600, maxRunSeconds: 120, workerID: "w", on: client, logger: logger)
            try await store.jobs.insert(
                SubmitRequest(model: model, payload: [:], startTimeoutSeconds: 300), requestID: waiting, submittedBy: "t", on: client,
                logger: logger)

            #expect(try await store.jobs.stopJobsPastRunDeadline(graceSeconds: 5, now: seconds(60), on: client, logger: logger) == 0)
            #expect(try await store.jobs.stopJobsPastRunDeadline(graceSeconds: 5, now: seconds(121), on: client, logger: logger) == 1)
            #expect(try await status(of: running, on: client) == ("running", "max_run_time", nil))

            #expect(try await store.jobs.failJobsPastStartDeadline(now: seconds(200), on: client, logger: logger).isEmpty)
            #expect(try await store.jobs.failJobsPastStartDeadline(now: seconds(301), on: client, logger: logger) == [model: 1])
            #expect(try await status(of: waiting, on: client) == ("failed", nil, JobsTable.ErrorType.requestTimeout))
        }
    }

    @Test func finishedJobsArePrunedOnlyPastTheirRetention() async throws {
        try await withStore { store, client, model in
            let id = UUID()
            try await store.jobs.insert(SubmitRequest(model: model, payload: [:]), requestID: id, submittedBy: "t", on: client, logger: logger)
            #expect(try await store.jobs.cancelPending(model: model, actor: "t", on: client, logger: logger) == 1)

            let day = 86_400.0
            #expect(
                try await store.jobs.pruneFinished(retentionSeconds: day, batchSize: 10, now: seconds(day - 60), on: client, logger: logger) == 0)
            #expect(
                try await store.jobs.pruneFinished(retentionSeconds: day, batchSize: 10, now: seconds(day + 60), on: client, logger: logger) == 1)
            let left = try await client.query("SELECT count(*) FROM jobs WHERE request_id = \(id)", logger: logger).collect()
            #expect(try left.first?.decode(Int.self) == 0)
        }
    }
}
