import Foundation
import SpoolCore
import Testing

/// `spool-bench --quick --peers` runs every scenario and the peer with small counts, so the benchmark cannot rot. Its
/// figures from a debug build mean little; BENCHMARKS.md has a release run's.
@Suite(.serialized) struct BenchmarkTests {
    @Test func theQuickBenchmarkRunsAndWritesEveryFigure() async throws {
        let json = NSTemporaryDirectory() + "spool-bench-\(UUID().uuidString.prefix(8)).json"
        defer { unlink(json) }
        let process = try SpawnedProcess([SpawnedProcess.buildDirectory + "/spool-bench", "--quick", "--peers", "--json", json])
        let status = try await process.wait(timeout: .seconds(600))
        #expect(status == 0, "\(process.output.suffix(4000))")
        #expect(!FileManager.default.fileExists(atPath: NSTemporaryDirectory() + "spool-bench-\(process.pid)"), "the cluster directory is removed")
        let figures = try JSONValue.parse(try String(contentsOfFile: json, encoding: .utf8)).objectValue ?? [:]
        for key in [
            "floor_single_jobs_per_s", "floor_batched_jobs_per_s", "submit_jobs_per_s", "drain_jobs_per_s", "pickup_p50_ms",
            "pickup_p99_ms", "status_reads_per_s", "claim_ms_at_1k", "claim_ms_at_1m", "status_ms_at_1k", "status_ms_at_1m",
            "broker_rss_idle_mb", "broker_rss_1k_polls_mb", "batch_enqueue_lines_per_s", "batch_upload_mb_per_s",
            "estimate_answered_steady_pct", "submit_bulk_jobs_per_s", "status_304_reads_per_s",
            // The peer: pgqueuer from PyPI in a venv spool-bench makes, and Spool's figures over its.
            "pgqueuer_drain_best_jobs_per_s", "pgqueuer_pickup_p50_ms", "drain_vs_pgqueuer", "pickup_p50_vs_pgqueuer",
            "submit_bulk_vs_pgqueuer",
        ] {
            let value: Double? =
                switch figures[key] {
                case .double(let value)?: value
                case .int(let value)?: Double(value)
                default: nil
                }
            #expect((value ?? 0) > 0, "\(key) is \(String(describing: figures[key]))")
        }
        print(process.output.split(separator: "\n").filter { $0.hasPrefix("  ") }.joined(separator: "\n"))
    }
}
