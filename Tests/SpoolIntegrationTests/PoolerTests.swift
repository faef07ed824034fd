import Foundation
import Testing

/// A broker behind Debian's PgBouncer (1.18) in transaction mode, which does not track prepared
/// statements: with `--unnamed-statements` every statement passes, and the LISTEN connection goes
/// straight to PostgreSQL (`--listen-database-url`), so waiting leases still wake at once.
@Suite(.serialized) struct PoolerTests {
    /// A PgBouncer in transaction mode in front of the test server, run as the postgres user (it
    /// refuses root) with two server connections, so statements of one client do move between them.
    final class PgBouncer {
        let directory: String
        let port: Int
        let process: SpawnedProcess

        init(database: String) async throws {
            let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].first { FileManager.default.isExecutableFile(atPath: $0) }
            guard let binary else { throw TestFailure("PgBouncer is not installed: apt-get install pgbouncer (.ci/run does)") }
            directory = NSTemporaryDirectory() + "spool-pgbouncer-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            port = try freePort()
            let server = TestDatabase.server
            let socketDirectory = server.queryItems?.first { $0.name == "host" }?.value ?? "/tmp"
            let ini = """
                [databases]
                \(database) = host=\(socketDirectory) port=\(server.port ?? 5432) dbname=\(database) user=\(server.user ?? "spool")
                [pgbouncer]
                listen_addr = 127.0.0.1
                listen_port = \(port)
                unix_socket_dir =
                auth_type = any
                pool_mode = transaction
                default_pool_size = 2
                max_client_conn = 200
                logfile = \(directory)/pgbouncer.log
                pidfile = \(directory)/pgbouncer.pid
                """
            try ini.write(toFile: directory + "/pgbouncer.ini", atomically: true, encoding: .utf8)
            _ = try await SpawnedProcess(["chown", "-R", "postgres", directory]).wait(timeout: .seconds(10))
            process = try SpawnedProcess(["runuser", "-u", "postgres", "--", binary, directory + "/pgbouncer.ini"])
            try await eventually("PgBouncer listens") {
                (try? String(contentsOfFile: directory + "/pgbouncer.log", encoding: .utf8))?.contains("process up") ?? false
            }
        }

        func stop() async {
            _ = await process.stop()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    @Test func aBrokerWorksThroughPgBouncerInTransactionMode() async throws {
        let database = try await TestDatabase.migrated()
        let bouncer = try await PgBouncer(database: database)
        do {
            let broker = try await BrokerProcess.start(
                databaseURL: "postgres://spool@127.0.0.1:\(bouncer.port)/\(database)?sslmode=disable",
                arguments: ["--unnamed-statements", "--listen-database-url", TestDatabase.url(database: database)])
            do {
                try await Self.exercise(broker)
            } catch {
                _ = await broker.process.stop(signal: SIGKILL)
                throw error
            }
            #expect(await broker.process.stop() == 0, "\(broker.process.output.suffix(4000))")
        } catch {
            await bouncer.stop()
            throw error
        }
        await bouncer.stop()
    }

    /// Jobs through the broker, and a waiting lease woken by a submit.
    static func exercise(_ broker: BrokerProcess) async throws {
        let model = uniqueModel("pooled")

        // Forty jobs through submit → lease → complete, eight workers at once.
        let ids = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<40 { group.addTask { try await HTTP.submit(broker: broker, model: model, payload: ["i": .int(Int64(index))]) } }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    while true {
                        let lease = try await HTTP.post(
                            broker.baseURL + "/v1/worker/lease", ["worker_id": .string("w\(worker)"), "models": [.string(model)], "max_jobs": 2])
                        #expect(lease.status == 200, "\(lease.json)")
                        guard let jobs = lease["jobs"]?.arrayValue, !jobs.isEmpty else { return }
                        for job in jobs.compactMap(\.objectValue) {
                            let done = try await HTTP.post(
                                broker.baseURL + "/v1/worker/jobs/\(job["request_id"]!.stringValue!)/complete",
                                ["lease_token": job["lease_token"]!, "outputs": ["by": .string("w\(worker)")]])
                            #expect(done.status == 200 && done["status"] == "done", "\(done.json)")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        for id in ids {
            #expect(try await HTTP.status(broker: broker, model: model, requestID: id)["status"] == "done")
        }

        // A waiting lease is woken by the NOTIFY of a submit, through the direct LISTEN connection.
        let waiting = Task {
            let started = ContinuousClock.now
            let lease = try await HTTP.post(
                broker.baseURL + "/v1/worker/lease", ["worker_id": "waiter", "models": [.string(model)], "wait_seconds": 30])
            return (lease, ContinuousClock.now - started)
        }
        try await eventually("the lease waits") {
            let lines = try await HTTP.text(broker.baseURL + "/metrics").split(separator: "\n")
            return lines.contains("spool_long_polls_open 1") || lines.contains("spool_long_polls_open 1.0")
        }
        _ = try await HTTP.submit(broker: broker, model: model)
        let (lease, waited) = try await waiting.value
        #expect(lease["jobs"]?.arrayValue?.count == 1, "\(lease.json)")
        #expect(waited < .seconds(15), "the waiting lease was answered by its wait running out, not by the submit")
    }
}
