import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import PostgresNIO
import SpoolCore
import Testing

@testable import SpoolBroker
@testable import SpoolStore

#if canImport(Glibc)
import Glibc
#endif

/// What the chaos runs found, each held to in the suite: a database connection that dies or
/// freezes under a statement, a requeue pass poisoned by one job, and a broker's SIGTERM.
@Suite struct FaultTests {
    static let key = "fault-key-\(UUID().uuidString)"

    /// A URL naming several hosts is read as libpq reads it; what a relay cannot do is refused.
    @Test func aURLWithSeveralHostsIsReadAsLibpqReadsIt() throws {
        let url = try DatabaseURL("postgres://spool:s%40cret@db1:5433,[::1]:5434,db3/spool?target_session_attrs=read-write&sslmode=require")
        #expect(url.hosts == [.init(name: "db1", port: 5433), .init(name: "::1", port: 5434), .init(name: "db3", port: 5432)])
        #expect(url.sessionAttributes == .readWrite && url.needsRelay)
        #expect(url.username == "spool" && url.password == "s@cret" && url.database == "spool")
        #expect(!url.description.contains("cret"), "\(url.description)")
        #expect(!(try DatabaseURL("postgres://spool@db1:5432/spool")).needsRelay)
        #expect(throws: SpoolStoreError.self) { try DatabaseURL("postgres://spool@db1,db2/spool?sslmode=verify-full") }
        #expect(throws: SpoolStoreError.self) { try DatabaseURL("postgres://spool@db1,db2/spool?target_session_attrs=standby") }
        #expect(throws: SpoolStoreError.self) { try DatabaseURL("postgres://spool@db1:99999,db2/spool") }
    }

    /// PostgresNIO 1.33 drops a query written to a connection that closed after it was leased;
    /// its answer never comes. After a PostgreSQL crash, brokers held such requests forever and
    /// never finished a graceful shutdown. A guarded statement ends with an error instead.
    @Test func aStatementWhoseConnectionClosesUnderItFails() async throws {
        try await TestDatabase.withClient(database: try await TestDatabase.migrated()) { client in
            try await client.withConnection { connection in
                let started = ContinuousClock.now
                async let outcome: Result<Int, any Error> = {
                    do {
                        // An answer that never comes, as for the dropped query.
                        return .success(
                            try await connection.guarded {
                                try await Task.sleep(for: .seconds(3600))
                                return 1
                            })
                    } catch {
                        return .failure(error)
                    }
                }()
                try await Task.sleep(for: .milliseconds(200))
                try await connection.close()
                let result = await outcome
                #expect(throws: DatabaseConnectionLost.self) { try result.get() }
                #expect(ContinuousClock.now - started < .seconds(10))
                // And one sent on it afterwards fails at once.
                await #expect(throws: DatabaseConnectionLost.self) { try await connection.run("SELECT 1", logger: TestDatabase.logger) }
            }
        }
    }

    /// A LISTEN connection that stays open but answers nothing (its server frozen, or its host gone
    /// without a reset) used to leave long-polls on the fallback poll until a restart. The broker
    /// now asks it a question every few seconds and reconnects when it does not answer.
    @Test func aFrozenListenConnectionIsReplaced() async throws {
        guard getuid() == 0 else { return }  // freezing a PostgreSQL backend needs its owner's or root's rights
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            // No fallback poll to speak of: only a NOTIFY wakes a long-poll here.
            try await withTestBroker(
                database: database,
                {
                    $0.apiKeys = [Self.key]
                    $0.pendingPollSeconds = 600
                }
            ) { client in
                let broker = client.withKey(Self.key)
                // Frozen once it is listening and idle, waiting for its client, as a connection whose
                // network stopped moving packets leaves it.
                func listeners(idle: Bool) async throws -> [Int32] {
                    try await TestDatabase.withClient(database: database) { pg in
                        try await pg.query(
                            """
                            SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
                              AND (query LIKE 'LISTEN%' OR query LIKE '%spool listener health%')
                              AND (NOT \(idle) OR (state = 'idle' AND wait_event = 'ClientRead' AND query LIKE 'LISTEN "spool_keys"%'))
                            """, logger: TestDatabase.logger
                        ).collect().map { try $0.decode(Int32.self) }
                    }
                }
                var frozen: [Int32] = []
                try await eventually("the broker listens") {
                    frozen = try await listeners(idle: true)
                    return !frozen.isEmpty
                }
                for pid in frozen { kill(pid, SIGSTOP) }
                defer { for pid in frozen { kill(pid, SIGCONT) } }
                try await eventually("a new LISTEN connection replaces the frozen one", timeout: .seconds(20)) {
                    try await !listeners(idle: false).filter { !frozen.contains($0) }.isEmpty
                }
                let model = uniqueModel("frozen-listen")
                // Through a client of its own: the test client has one connection, and the submit needs it.
                let waiting = Task {
                    try await HTTP.post(
                        broker.baseURL + "/v1/worker/lease", ["worker_id": "w", "models": [.string(model)], "wait_seconds": 25],
                        headers: [("Authorization", "Bearer \(Self.key)")])
                }
                try await eventually("the long-poll waits") { broker.waitingLeases() == 1 }
                let id = try await broker.submit(model: model)
                let started = ContinuousClock.now
                let answer = try await waiting.value
                #expect(answer["jobs"]?.arrayValue?.first?.objectValue?["request_id"] == .string(id), "\(answer.json)")
                #expect(ContinuousClock.now - started < .seconds(20), "a NOTIFY through the new connection woke it, not the wait's end")
            }
        }
    }

    /// One job whose requeue fails (here: a trigger that refuses it) used to roll back the whole
    /// pass of up to 500, every second, leaving them all running. Each job is on its own now.
    @Test func aJobWhoseRequeueFailsHoldsUpNoOther() async throws {
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            try await TestDatabase.withClient(database: database) { client in
                let store = Store(client: client)
                let logger = TestDatabase.logger
                let model = uniqueModel("requeue")
                let ids = [UUID(), UUID(), UUID()]
                for id in ids {
                    try await store.jobs.insert(
                        SubmitRequest(model: model, payload: [:]), requestID: id, submittedBy: "t", on: client, logger: logger)
                }
                _ = try await store.jobs.claim(
                    models: [model], limit: 3, leaseSeconds: 60, maxRunSeconds: 3600, workerID: "w", on: client, logger: logger)
                try await client.query("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE model = \(model)", logger: logger)
                try await client.query(
                    PostgresQuery(
                        unsafeSQL: """
                            CREATE FUNCTION refuse_poisoned() RETURNS trigger LANGUAGE plpgsql AS $$
                            BEGIN RAISE EXCEPTION 'poisoned job'; END $$
                            """), logger: logger)
                try await client.query(
                    PostgresQuery(
                        unsafeSQL: """
                            CREATE TRIGGER poisoned BEFORE UPDATE ON jobs FOR EACH ROW
                            WHEN (OLD.request_id = '\(ids[1].uuidString)') EXECUTE FUNCTION refuse_poisoned()
                            """), logger: logger)
                let requeued = try await store.jobs.requeueExpiredLeases(retryLimit: 3, on: client, logger: logger)
                #expect(Set(requeued.map(\.requestID)) == [ids[0], ids[2]])
                let statuses = try await client.query("SELECT request_id, status FROM jobs WHERE model = \(model)", logger: logger)
                    .collect().map { try $0.decode((UUID, String).self) }
                #expect(Dictionary(uniqueKeysWithValues: statuses) == [ids[0]: "pending", ids[1]: "running", ids[2]: "pending"])
            }
        }
    }

    /// A job's info is capped: an emit that would take it past 1 MiB is refused (413) and changes
    /// nothing; the lease holds for the next, smaller heartbeat.
    @Test func anEmitPastTheInfoCapIsRefused() async throws {
        try await withTestBroker({ $0.apiKeys = [Self.key] }) { client in
            let broker = client.withKey(Self.key)
            let model = uniqueModel("info-cap")
            _ = try await broker.submit(model: model)
            let job = try #require(try await broker.lease(models: [model]).first)
            let chunk = String(repeating: "x", count: 400_000)
            #expect(try await broker.write("heartbeat", job: job, ["info": ["a": .string(chunk), "b": .string(chunk)]]).status == 200)
            let refused = try await broker.write("heartbeat", job: job, ["info": ["c": .string(chunk)]])
            #expect(refused.status == 413 && refused["code"] == "info_too_large", "\(refused.status) \(refused.json)")
            // Replacing a key keeps it under the cap, and the lease still holds.
            #expect(try await broker.write("heartbeat", job: job, ["info": ["a": "small"]]).status == 200)
            #expect(try await broker.write("complete", job: job, ["outputs": [:]]).status == 200)
        }
    }

    /// On SIGTERM a broker answers its open long-polls (empty), ends its status streams, lets
    /// requests under way finish, and exits; it does not wait on its clients.
    @Test func aBrokerShutsDownPromptlyUnderOpenLongPollsAndStreams() async throws {
        let broker = try await BrokerProcess.start(
            databaseURL: TestDatabase.url(database: TestDatabase.migrated()), arguments: ["--api-key", Self.key])
        let auth = [("Authorization", "Bearer \(Self.key)")]
        let model = uniqueModel("sigterm")
        let id = try await HTTP.submit(broker: broker, model: model, headers: auth)
        let stream = EventStream(url: broker.baseURL + "/v1/queue/status/stream?model=\(model)&request_id=\(id)", headers: auth)
        try await eventually("the stream sends its first event") { !stream.dataEvents.isEmpty }
        let idle = uniqueModel("sigterm-idle")
        let longPoll = Task {
            try await HTTP.post(
                broker.baseURL + "/v1/worker/lease", ["worker_id": "w", "models": [.string(idle)], "wait_seconds": 30], headers: auth)
        }
        // Waiting in the broker, not still on its way there: a request not yet read is closed, not answered.
        try await eventually("the long-poll waits") {
            let lines = try await HTTP.text(broker.baseURL + "/metrics").split(separator: "\n")
            return lines.contains("spool_long_polls_open 1") || lines.contains("spool_long_polls_open 1.0")
        }
        let started = ContinuousClock.now
        broker.process.signal(SIGTERM)
        let answer = try await longPoll.value
        #expect(answer.status == 200 && answer["jobs"] == [], "\(answer.status) \(answer.json)")
        #expect(try await broker.process.wait(timeout: .seconds(10)) == 0)
        try await eventually("the stream ended") { stream.ended }
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
