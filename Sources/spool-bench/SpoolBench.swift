import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging

/// `spool-bench`: Spool against the database's own limit, in one run on one PostgreSQL.
@main
struct SpoolBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-bench",
        abstract:
            "Measures Spool: the database floor, submit (one job and bulk), drain, pickup latency, status reads, depth, memory, churn, batch enqueue, fairness between tenants; with --peers, pgqueuer beside it.",
        discussion: """
            Starts its own PostgreSQL cluster (or uses --database-url), a fresh database per scenario, broker processes \
            (spool-broker beside this executable) and workers on the SDK. Build it in release mode: \
            swift build -c release && .build/release/spool-bench --json bench.json
            """)

    @Flag(help: "Small counts, for CI: checks the benchmark still runs; the figures mean little.")
    var quick = false

    @Option(help: "Write the figures as JSON to this file.")
    var json: String?

    @Option(help: "Use this PostgreSQL server instead of a private cluster (it needs CREATE DATABASE).")
    var databaseURL: String?

    @Option(
        help: "Scenarios to run, comma-separated: floor, submit, bulk, drain, pickup, estimate, depth, memory, churn, batch, fairness. Default: all.")
    var only: String?

    @Flag(
        help:
            "Also measure pgqueuer 1.6.0 (from PyPI, in a venv made once in ~/.cache/spool-bench) on the same cluster, and report Spool's figures as ratios to it."
    )
    var peers = false

    func run() async throws {
        var logger = Logger(label: "spool-bench")
        logger.logLevel = .error
        let sizes = quick ? BenchSizes.quick : BenchSizes()
        let database = try BenchDatabase(url: databaseURL, logger: logger)
        defer { database.stop() }
        var httpConfiguration = HTTPClient.Configuration()
        httpConfiguration.connectionPool = .init(
            idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(sizes.longPolls, 64) + 64)
        httpConfiguration.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: httpConfiguration)
        let report = Report()
        let scenarios = Scenarios(database: database, sizes: sizes, http: http, logger: logger, report: report)
        let wanted = Set((only ?? "floor,submit,bulk,drain,pickup,estimate,depth,memory,churn,batch,fairness").split(separator: ",").map(String.init))

        print(
            "spool-bench\(quick ? " --quick" : ""): \(ProcessInfo.processInfo.activeProcessorCount) cores, \(ProcessInfo.processInfo.physicalMemory / 1_073_741_824) GiB"
        )
        do {
            if wanted.contains("floor") { try await scenarios.floor() }
            if wanted.contains("submit") {
                let (broker, ids) = try await scenarios.submit()
                try await scenarios.status(broker: broker, ids: ids)
                broker.stop()
            }
            if wanted.contains("bulk") { try await scenarios.bulk() }
            if wanted.contains("drain") { try await scenarios.drain() }
            if wanted.contains("pickup") { try await scenarios.pickup() }
            if wanted.contains("estimate") { try await scenarios.estimate() }
            if wanted.contains("depth") { try await scenarios.depth() }
            if wanted.contains("memory") { try await scenarios.memory() }
            if wanted.contains("churn") { try await scenarios.churn() }
            if wanted.contains("batch") { try await scenarios.batch() }
            if wanted.contains("fairness") { try await scenarios.fairness() }
            if peers { try await scenarios.peers() }
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
        print("\n" + report.table())
        if let json {
            let metadata = [
                "date": ISO8601DateFormatter().string(from: Date()), "quick": String(quick),
                "cores": String(ProcessInfo.processInfo.activeProcessorCount),
            ]
            try report.json(metadata: metadata).write(to: URL(fileURLWithPath: json))
            print("wrote \(json)")
        }
    }
}
