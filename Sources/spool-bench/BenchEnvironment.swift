import Foundation
import Logging
import PostgresNIO
import SpoolCore
import SpoolStore

#if canImport(Glibc)
import Glibc
#endif

/// The PostgreSQL server the benchmark runs against (its own embedded cluster, or a URL), and a
/// fresh database per scenario so one scenario's dead rows do not slow the next.
final class BenchDatabase: Sendable {
    let url: URLComponents
    let cluster: EmbeddedPostgres?
    /// The private cluster's directory (a gigabyte after a full run), removed at the end.
    let clusterDirectory: String?
    let logger: Logger

    init(url: String?, logger: Logger) throws {
        self.logger = logger
        if let url {
            self.url = URLComponents(string: url)!
            self.cluster = nil
            self.clusterDirectory = nil
        } else {
            let directory = NSTemporaryDirectory() + "spool-bench-\(getpid())"
            let cluster = try EmbeddedPostgres(dataDirectory: directory, logger: logger)
            self.cluster = cluster
            self.clusterDirectory = directory
            self.url = URLComponents(string: cluster.url)!
        }
    }

    func url(database: String) -> String {
        var components = url
        components.path = "/" + database
        return components.string!
    }

    func configuration(database: String) throws -> PostgresClient.Configuration {
        try DatabaseURL(url(database: database)).configuration
    }

    /// Runs `body` with a pool of `connections` on `database`.
    func withClient<Result: Sendable>(
        database: String, connections: Int = 20, _ body: (PostgresClient) async throws -> Result
    ) async throws -> Result {
        var configuration = try configuration(database: database)
        configuration.options.maximumConnections = connections
        configuration.options.minimumConnections = 0
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// A new, migrated database named after the scenario.
    func fresh(_ name: String) async throws -> String {
        let database = "bench_\(name)"
        try await withClient(database: "postgres", connections: 1) { client in
            try await client.query(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(database) WITH (FORCE)"), logger: logger)
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(database)"), logger: logger)
        }
        try await withClient(database: database, connections: 1) { client in
            _ = try await Migrator(client: client).migrate(logger: logger)
        }
        return database
    }

    /// Inserts `count` pending jobs of `model` straight into the table, in batches (not what is measured).
    func insertPending(_ count: Int, model: String, database: String) async throws {
        try await withClient(database: database, connections: 1) { client in
            var inserted = 0
            while inserted < count {
                let batch = min(100_000, count - inserted)
                try await client.query(
                    """
                    INSERT INTO jobs (request_id, model, priority, payload, fair_tag)
                    SELECT gen_random_uuid(), \(model), 0, jsonb_build_object('i', i), \(inserted) + i FROM generate_series(1, \(batch)) AS i
                    """, logger: logger)
                inserted += batch
            }
            try await client.query("VACUUM (ANALYZE) jobs", logger: logger)
        }
    }

    func stop() {
        cluster?.stop()
        if let clusterDirectory { try? FileManager.default.removeItem(atPath: clusterDirectory) }
    }
}

/// A `spool-broker` process started from beside this executable.
final class BrokerProcess: Sendable {
    let pid: pid_t
    let port: Int
    let outputPath: String
    var baseURL: String { "http://127.0.0.1:\(port)" }

    init(databaseURL: String, arguments: [String] = [], environment: [String: String] = [:]) async throws {
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path + "/spool-broker"
        outputPath = NSTemporaryDirectory() + "spool-bench-broker-\(UUID().uuidString.prefix(8)).log"
        pid = try Self.spawn(
            [binary, "--database-url", databaseURL, "--port", "0"] + arguments,
            output: outputPath, environment: environment)
        let deadline = ContinuousClock.now + .seconds(60)
        var found: Int?
        while found == nil, ContinuousClock.now < deadline {
            let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            if let match = text.firstMatch(of: #/listening on 127\.0\.0\.1:(\d+)/#) { found = Int(match.1) }
            try await Task.sleep(for: .milliseconds(20))
        }
        guard let found else { throw BenchError("spool-broker did not start: \((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")") }
        port = found
    }

    /// Resident memory in MiB, from /proc.
    var residentMiB: Double {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
    }

    func stop() {
        kill(pid, SIGTERM)
        _ = Spawn.wait(pid)
        unlink(outputPath)
    }

    static func spawn(_ arguments: [String], output: String, environment: [String: String]) throws -> pid_t {
        try Spawn.start(arguments, environment: Spawn.environment(with: environment), stdout: .file(output))
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// CPU time spent by the processes of one run, from /proc: where each drained job's cost goes.
struct CPUTimes {
    var postgres: Double
    var broker: Double
    var bench: Double

    /// The broker's, this process's (the SDK workers run here), and every `postgres` process's
    /// (the cluster's backends; zero when the server is elsewhere).
    static func now(broker: pid_t) -> CPUTimes {
        var postgres = 0.0
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        for entry in entries where entry.first?.isNumber == true {
            let comm = (try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8)) ?? ""
            if comm.hasPrefix("postgres") { postgres += seconds(pid: entry) }
        }
        return CPUTimes(postgres: postgres, broker: seconds(pid: String(broker)), bench: seconds(pid: "self"))
    }

    /// utime + stime of a process, in seconds.
    static func seconds(pid: String) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        // Fields after the command name: state is the 1st, utime the 12th, stime the 13th.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func - (after: CPUTimes, before: CPUTimes) -> CPUTimes {
        CPUTimes(postgres: after.postgres - before.postgres, broker: after.broker - before.broker, bench: after.bench - before.bench)
    }
}
