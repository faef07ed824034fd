import Foundation
import SpoolCore

/// The best peer in the same run: pgqueuer 1.6.0 from PyPI, measured on the same PostgreSQL
/// cluster (same settings, a fresh database) by `scripts/bench/pgqueuer_peer.py`.
extension Scenarios {
    static let pgqueuerRequirement = "pgqueuer[asyncpg]==1.6.0"

    func peers() async throws {
        let python = try Self.peerPython()
        let name = try await database.fresh("peer")
        let script = Self.packageRoot + "/scripts/bench/pgqueuer_peer.py"
        var arguments = [script, "--dsn", database.url(database: name), "--jobs", String(sizes.drainJobs), "--pickups", String(sizes.pickups)]
        arguments += ["--processes", "1,4", "--batch", "100"]
        if sizes.drainJobs < BenchSizes().drainJobs { arguments.append("--quick") }
        let output = try Self.run(python, arguments)
        guard let last = output.split(separator: "\n").last, let figures = try? JSONValue.parse(String(last)).objectValue else {
            throw BenchError("pgqueuer_peer.py printed no figures: \(output.suffix(2000))")
        }
        let descriptions = [
            "enqueue_jobs_per_s": ("pgqueuer: enqueue, 1,000 jobs per call, one connection", "jobs/s"),
            "enqueue_single_jobs_per_s": ("pgqueuer: enqueue one job per call, 32 concurrent tasks", "jobs/s"),
            "drain_jobs_per_s_1": ("pgqueuer: drain, 1 worker process, batch 100, no-op", "jobs/s"),
            "drain_jobs_per_s_4": ("pgqueuer: drain, 4 worker processes, batch 100, no-op", "jobs/s"),
            "drain_best_jobs_per_s": ("pgqueuer: the better drain", "jobs/s"),
            "drain_cpu_us_postgres_1": ("pgqueuer drain, 1 process: PostgreSQL CPU per job", "µs"),
            "drain_cpu_us_workers_1": ("pgqueuer drain, 1 process: worker CPU per job", "µs"),
            "drain_cpu_us_postgres_4": ("pgqueuer drain, 4 processes: PostgreSQL CPU per job", "µs"),
            "drain_cpu_us_workers_4": ("pgqueuer drain, 4 processes: workers' CPU per job", "µs"),
            "pickup_p50_ms": ("pgqueuer: pickup, enqueue to handler start (idle worker), p50", "ms"),
            "pickup_p99_ms": ("pgqueuer: pickup p99", "ms"),
            "pickup_max_ms": ("pgqueuer: pickup max", "ms"),
            "pickup_enqueue_p50_ms": ("pgqueuer: the enqueue's own round trip inside that pickup, p50", "ms"),
        ]
        for (key, (what, unit)) in descriptions.sorted(by: { $0.key < $1.key }) {
            guard let value = figures[key]?.doubleValue else { continue }
            report.add("pgqueuer_" + key, value, what, unit)
        }
        // Spool's figure over the peer's: above 1, Spool is faster (rates) or slower (latencies).
        let ratios = [
            ("drain_vs_pgqueuer", "drain_jobs_per_s", "pgqueuer_drain_best_jobs_per_s", "Spool's drain over pgqueuer's best (above 1: faster)"),
            ("pickup_p50_vs_pgqueuer", "pickup_p50_ms", "pgqueuer_pickup_p50_ms", "Spool's pickup p50 over pgqueuer's (above 1: slower)"),
            ("pickup_p99_vs_pgqueuer", "pickup_p99_ms", "pgqueuer_pickup_p99_ms", "Spool's pickup p99 over pgqueuer's (above 1: slower)"),
            ("submit_bulk_vs_pgqueuer", "submit_bulk_jobs_per_s", "pgqueuer_enqueue_jobs_per_s", "Spool's bulk submit over pgqueuer's bulk enqueue"),
            (
                "submit_vs_pgqueuer", "submit_jobs_per_s", "pgqueuer_enqueue_single_jobs_per_s",
                "Spool's one-job submits over pgqueuer's one-job enqueues"
            ),
        ]
        for (key, spool, peer, what) in ratios {
            guard let mine = report.value(spool), let theirs = report.value(peer), theirs > 0 else { continue }
            report.add(key, mine / theirs, what, "×")
        }
    }

    /// The repository this executable was built from: the peer script lives there.
    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// A venv with pgqueuer, made once and kept (~/.cache/spool-bench).
    static func peerPython() throws -> String {
        let home = ProcessInfo.processInfo.environment["HOME"] ?? NSTemporaryDirectory()
        let venv = home + "/.cache/spool-bench/pgqueuer-1.6.0"
        let python = venv + "/bin/python"
        if (try? run(python, ["-c", "import pgqueuer, asyncpg"])) != nil { return python }
        print("  (making a venv with \(pgqueuerRequirement) in \(venv))")
        _ = try run("/usr/bin/env", ["python3", "-m", "venv", venv])
        _ = try run(venv + "/bin/pip", ["install", "--quiet", pgqueuerRequirement])
        return python
    }

    /// Runs a program to its end and returns its standard output; its standard error is this
    /// process's, so its progress shows.
    static func run(_ executable: String, _ arguments: [String]) throws -> String {
        var environment = ProcessInfo.processInfo.environment
        // pgqueuer reads these to make its tables unlogged: both sides keep the same durability.
        environment["PGQUEUER_DURABILITY"] = nil
        environment["DURABILITY"] = nil
        let outputPath = NSTemporaryDirectory() + "spool-bench-peer-\(UUID().uuidString.prefix(8)).out"
        defer { unlink(outputPath) }
        let pid = try Spawn.start([executable] + arguments, environment: environment, stdout: .file(outputPath), stderr: .descriptor(2))
        let status = Spawn.wait(pid)
        guard status == 0 else {
            throw BenchError("\(executable) \(arguments.prefix(2).joined(separator: " ")) exited \(status)")
        }
        return (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    }
}
