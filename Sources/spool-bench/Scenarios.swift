import AsyncHTTPClient
import Foundation
import Histogram
import Logging
import NIOCore
import PostgresNIO
import SpoolCore
import SpoolStore
import SpoolWorker
import Synchronization

/// How many jobs and clients each scenario uses: the full run, or `--quick` for CI.
struct BenchSizes: Sendable {
    var floorJobs = 100_000
    var connections = 20
    var submitJobs = 20_000
    var submitClients = 32
    var bulkJobs = 100_000
    var bulkClients = 4
    var drainJobs = 100_000
    var drainWorkers = 4
    var drainConcurrency = 32
    var pickups = 500
    var statusReads = 20_000
    var statusClients = 32
    var depthSamples = 300
    var deepQueue = 1_000_000
    var longPolls = 1000
    var churnJobs = 1_000_000
    var batchLines = 100_000
    var fairBacklog = 100_000
    var fairLateJobs = 100

    static let quick = BenchSizes(
        floorJobs: 2000, connections: 8, submitJobs: 1000, submitClients: 8, bulkJobs: 4000, bulkClients: 2, drainJobs: 2000, drainWorkers: 2,
        drainConcurrency: 16,
        pickups: 30, statusReads: 1000, statusClients: 8, depthSamples: 30, deepQueue: 20_000, longPolls: 100, churnJobs: 20_000,
        batchLines: 2000, fairBacklog: 5000, fairLateJobs: 20)
}

/// Latencies in microseconds, for percentiles (HdrHistogram).
struct Latencies {
    var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)

    mutating func record(_ duration: Duration) {
        _ = histogram.record(UInt64(max(0, duration.microseconds)))
    }

    mutating func merge(_ other: Latencies) {
        for bucket in other.histogram.recordedValues() { _ = histogram.record(bucket.value, count: bucket.count) }
    }

    func ms(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
    var maxMs: Double { Double(histogram.max) / 1000 }
    var count: UInt64 { histogram.totalCount }
}

extension Duration {
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// The scenarios. Each starts what it needs on a fresh database and stops it after.
struct Scenarios: Sendable {
    let database: BenchDatabase
    let sizes: BenchSizes
    let http: HTTPClient
    let logger: Logger
    let report: Report

    // MARK: floor

    /// The broker's own claim and complete statements, straight to PostgreSQL, from as many
    /// connections as a broker's pool: one job per statement, then batches of 100.
    func floor() async throws {
        for (label, batch) in [("single", 1), ("batched", 100)] {
            let name = try await database.fresh("floor_\(label)")
            try await database.insertPending(sizes.floorJobs, model: "bench/floor", database: name)
            let (elapsed, cpu) = try await database.withClient(database: name, connections: sizes.connections) { client in
                // Inside the pool's lifetime: a backend's CPU time leaves /proc with it.
                let cpuBefore = CPUTimes.now(broker: 0)
                let start = ContinuousClock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<sizes.connections {
                        group.addTask {
                            let jobs = JobsTable()
                            while true {
                                let claimed = try await jobs.claim(
                                    models: ["bench/floor"], limit: batch, leaseSeconds: 60, maxRunSeconds: 3600, workerID: "floor",
                                    on: client, logger: logger)
                                if claimed.isEmpty { return }
                                _ = try await jobs.completeMany(
                                    claimed.map { Completion(requestID: $0.requestID, leaseToken: $0.leaseToken, outputs: [:]) },
                                    on: client, logger: logger)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                return (ContinuousClock.now - start, CPUTimes.now(broker: 0) - cpuBefore)
            }
            let rate = Double(sizes.floorJobs) / elapsed.seconds
            report.add(
                "floor_\(label)_jobs_per_s", rate,
                "floor: claim + complete \(batch == 1 ? "one job per statement" : "100 jobs per statement"), \(sizes.connections) connections",
                "jobs/s")
            report.add(
                "floor_\(label)_cpu_us_postgres", cpu.postgres * 1_000_000 / Double(sizes.floorJobs), "floor \(label): PostgreSQL CPU per job", "µs")
        }
    }

    // MARK: submit

    func submit() async throws -> (broker: BrokerProcess, ids: [String]) {
        let name = try await database.fresh("submit")
        let broker = try await BrokerProcess(databaseURL: database.url(database: name))
        let ids = Locked<[String]>([])
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<sizes.submitClients {
                group.addTask {
                    var mine: [String] = []
                    for index in stride(from: client, to: sizes.submitJobs, by: sizes.submitClients) {
                        let answer = try await post(
                            broker.baseURL + "/v1/queue/submit", ["model": "bench/submit", "payload": ["i": .int(Int64(index))]])
                        guard let id = answer.objectValue?["requestId"]?.stringValue else { throw BenchError("submit failed: \(answer)") }
                        mine.append(id)
                    }
                    ids.withLock { $0 += mine }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        report.add(
            "submit_jobs_per_s", Double(sizes.submitJobs) / elapsed.seconds, "submit over HTTP, \(sizes.submitClients) concurrent clients", "jobs/s")
        return (broker, ids.withLock { $0 })
    }

    // MARK: bulk

    /// Bulk submits: arrays of 1,000 jobs (one INSERT each) from a few concurrent clients.
    func bulk() async throws {
        let name = try await database.fresh("bulk")
        let broker = try await BrokerProcess(databaseURL: database.url(database: name))
        defer { broker.stop() }
        let perRequest = BulkSubmitItem.maxJobs
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<sizes.bulkClients {
                group.addTask {
                    for first in stride(from: client * perRequest, to: sizes.bulkJobs, by: sizes.bulkClients * perRequest) {
                        let items = (first..<min(first + perRequest, sizes.bulkJobs)).map { index -> JSONValue in
                            ["model": "bench/bulk", "payload": ["i": .int(Int64(index))]]
                        }
                        let answer = try await post(broker.baseURL + "/v1/queue/submit", .array(items))
                        guard answer.objectValue?["data"]?.arrayValue?.count == items.count else { throw BenchError("bulk submit failed: \(answer)") }
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        report.add(
            "submit_bulk_jobs_per_s", Double(sizes.bulkJobs) / elapsed.seconds,
            "bulk submit: arrays of \(perRequest) jobs over HTTP, \(sizes.bulkClients) concurrent clients", "jobs/s")
    }

    // MARK: status

    func status(broker: BrokerProcess, ids: [String]) async throws {
        let latencies = Locked(Latencies())
        let tags = Locked<[String: String]>([:])
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<sizes.statusClients {
                group.addTask {
                    var mine = Latencies()
                    for index in stride(from: client, to: sizes.statusReads, by: sizes.statusClients) {
                        let id = ids[index % ids.count]
                        let began = ContinuousClock.now
                        let response = try await http.execute(
                            HTTPClientRequest(url: broker.baseURL + "/v1/queue/status?model=bench%2Fsubmit&request_id=\(id)"), timeout: .seconds(60))
                        let body = try await response.body.collect(upTo: 1 << 20)
                        mine.record(ContinuousClock.now - began)
                        guard response.status == .ok, (try? JSONValue.parse(body.readableBytesView))?.objectValue?["queue_position"] != nil else {
                            throw BenchError("status read failed: \(response.status)")
                        }
                        let tag = response.headers.first(name: "ETag")
                        tags.withLock { $0[id] = tag }
                    }
                    let recorded = mine
                    latencies.withLock { $0.merge(recorded) }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - start
        let recorded = latencies.withLock { $0 }
        report.add(
            "status_reads_per_s", Double(sizes.statusReads) / elapsed.seconds, "status reads, \(sizes.statusClients) concurrent clients", "reads/s")
        report.add("status_p99_ms", recorded.ms(99), "status read latency p99 under that load", "ms")

        // The same reads made conditional, as a client that keeps each job's ETag does: unchanged jobs answer 304.
        let conditional = Locked(Latencies())
        let notModified = Locked(0)
        let conditionalStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<sizes.statusClients {
                group.addTask {
                    var mine = Latencies()
                    var unchanged = 0
                    for index in stride(from: client, to: sizes.statusReads, by: sizes.statusClients) {
                        let id = ids[index % ids.count]
                        var request = HTTPClientRequest(url: broker.baseURL + "/v1/queue/status?model=bench%2Fsubmit&request_id=\(id)")
                        if let tag = tags.withLock({ $0[id] }) { request.headers.add(name: "If-None-Match", value: tag) }
                        let began = ContinuousClock.now
                        let response = try await http.execute(request, timeout: .seconds(60))
                        _ = try await response.body.collect(upTo: 1 << 20)
                        mine.record(ContinuousClock.now - began)
                        if response.status == .notModified { unchanged += 1 }
                    }
                    let (recorded, count) = (mine, unchanged)
                    conditional.withLock { $0.merge(recorded) }
                    notModified.withLock { $0 += count }
                }
            }
            try await group.waitForAll()
        }
        let conditionalElapsed = ContinuousClock.now - conditionalStart
        guard notModified.withLock({ $0 }) == sizes.statusReads else {
            throw BenchError("conditional status reads: \(notModified.withLock { $0 }) of \(sizes.statusReads) answered 304")
        }
        report.add(
            "status_304_reads_per_s", Double(sizes.statusReads) / conditionalElapsed.seconds,
            "conditional status reads (If-None-Match, every one a 304), \(sizes.statusClients) clients", "reads/s")
        report.add("status_304_p99_ms", conditional.withLock { $0 }.ms(99), "conditional status read latency p99 under that load", "ms")

        // What bounds any read here: the same clients and broker over HTTP with no database at all.
        let floorStart = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for client in 0..<sizes.statusClients {
                group.addTask {
                    for _ in stride(from: client, to: sizes.statusReads, by: sizes.statusClients) {
                        let response = try await http.execute(HTTPClientRequest(url: broker.baseURL + "/healthz"), timeout: .seconds(60))
                        _ = try await response.body.collect(upTo: 1 << 16)
                    }
                }
            }
            try await group.waitForAll()
        }
        report.add(
            "http_floor_reads_per_s", Double(sizes.statusReads) / (ContinuousClock.now - floorStart).seconds,
            "GET /healthz (no database) from the same \(sizes.statusClients) clients: the HTTP floor under every read", "reads/s")
    }

    // MARK: drain

    /// Jobs waiting, then workers on the SDK with a no-op handler: first lease to last complete.
    func drain() async throws {
        let name = try await database.fresh("drain")
        try await database.insertPending(sizes.drainJobs, model: "bench/drain", database: name)
        let broker = try await BrokerProcess(databaseURL: database.url(database: name))
        defer { broker.stop() }
        var configuration = WorkerConfiguration(brokerURLs: [broker.baseURL], models: ["bench/drain"])
        configuration.concurrency = sizes.drainConcurrency
        configuration.waitSeconds = 5
        let start = ContinuousClock.now
        let cpuBefore = CPUTimes.now(broker: broker.pid)
        let workers = try (0..<sizes.drainWorkers).map { _ in try Worker(configuration: configuration, handler: NoOp(), logger: logger) }
        let running = workers.map { worker in Task { try await worker.run() } }
        try await database.withClient(database: name, connections: 1) { client in
            // Through the partial indexes of pending and running jobs: cheap, so the poll does not slow the drain.
            while true {
                let left =
                    try await client.query(
                        "SELECT EXISTS (SELECT 1 FROM jobs WHERE status = 'pending') OR EXISTS (SELECT 1 FROM jobs WHERE status = 'running')",
                        logger: logger
                    ).collect().first?.decode(Bool.self) ?? true
                if !left { return }
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let elapsed = ContinuousClock.now - start
        let cpu = CPUTimes.now(broker: broker.pid) - cpuBefore
        for task in running { task.cancel() }
        for task in running { _ = try? await task.value }
        report.add(
            "drain_jobs_per_s", Double(sizes.drainJobs) / elapsed.seconds,
            "drain \(sizes.drainJobs) waiting jobs: \(sizes.drainWorkers) SDK workers × concurrency \(sizes.drainConcurrency), no-op handler",
            "jobs/s")
        // How well leases and completes were batched: what the per-request costs are spread over.
        let metrics = try await getText(broker.baseURL + "/metrics")
        func requests(_ route: String) -> Double {
            metrics.split(separator: "\n").filter { $0.hasPrefix("spool_http_request_duration_seconds_count{") && $0.contains("route=\"\(route)\"") }
                .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
        }
        report.add("drain_jobs_per_lease", Double(sizes.drainJobs) / max(1, requests("/v1/worker/lease")), "drain: jobs per lease request", "jobs")
        // CPU per drained job by process: on a machine the database shares, this is what bounds the drain.
        let perJob = { (seconds: Double) in seconds * 1_000_000 / Double(sizes.drainJobs) }
        report.add("drain_cpu_us_postgres", perJob(cpu.postgres), "drain: PostgreSQL CPU per job", "µs")
        report.add("drain_cpu_us_broker", perJob(cpu.broker), "drain: broker CPU per job", "µs")
        report.add("drain_cpu_us_workers", perJob(cpu.bench), "drain: SDK workers' CPU per job (this process)", "µs")
        report.add(
            "drain_jobs_per_complete", Double(sizes.drainJobs) / max(1, requests("/v1/worker/complete")), "drain: jobs per complete request", "jobs")
    }

    // MARK: pickup

    /// An idle worker waiting in a lease; jobs submitted one at a time: submit to handler start.
    func pickup() async throws {
        let name = try await database.fresh("pickup")
        let broker = try await BrokerProcess(databaseURL: database.url(database: name))
        defer { broker.stop() }
        let starts = StartSignals()
        var configuration = WorkerConfiguration(brokerURLs: [broker.baseURL], models: ["bench/pickup"])
        configuration.waitSeconds = 20
        let worker = try Worker(configuration: configuration, handler: Working(starts: starts), logger: logger)
        let running = Task { try await worker.run() }
        defer { running.cancel() }
        var latencies = Latencies()
        var submits = Latencies()
        try await Task.sleep(for: .milliseconds(300))
        for index in 0..<sizes.pickups {
            // Idle again: the worker finished the last job and is back in its long-poll.
            try await Task.sleep(for: .milliseconds(20))
            let submitted = ContinuousClock.now
            let answer = try await post(broker.baseURL + "/v1/queue/submit", ["model": "bench/pickup", "payload": ["i": .int(Int64(index))]])
            submits.record(ContinuousClock.now - submitted)
            guard let id = answer.objectValue?["requestId"]?.stringValue else { throw BenchError("submit failed: \(answer)") }
            let started = try await starts.start(of: id, timeout: .seconds(30))
            latencies.record(started - submitted)
        }
        // The last job's result reaches the broker before the worker stops.
        try await Task.sleep(for: .milliseconds(500))
        // The part of the pickup that is the submit's own round trip (insert, commit, answer).
        report.add("pickup_submit_p50_ms", submits.ms(50), "pickup: the submit's own round trip p50", "ms")
        report.add("pickup_p50_ms", latencies.ms(50), "pickup latency, submit to handler start (idle worker), p50", "ms")
        report.add("pickup_p99_ms", latencies.ms(99), "pickup latency p99", "ms")
        report.add("pickup_max_ms", latencies.maxMs, "pickup latency max", "ms")
    }

    // MARK: estimate

    /// How right a waiting job's `estimated_wait_seconds` is: one worker of concurrency 2 running
    /// 0.5 s jobs; 24 jobs queued 2 s after it started (a cold start: nothing has ended yet), then
    /// 24 more once it has run a while (a steady state). Every waiting job's status is read every
    /// 0.5 s, as a polling client does; each answered estimate is compared with the time the job
    /// then really waited (those with at least 0.25 s left: the relative error of a tiny wait says little).
    func estimate() async throws {
        let name = try await database.fresh("estimate")
        let broker = try await BrokerProcess(databaseURL: database.url(database: name))
        defer { broker.stop() }
        let starts = StartSignals()
        var configuration = WorkerConfiguration(brokerURLs: [broker.baseURL], models: ["bench/estimate"])
        configuration.concurrency = 2
        let worker = try Worker(configuration: configuration, handler: Working(starts: starts, milliseconds: 500), logger: logger)
        let running = Task { try await worker.run() }
        defer { running.cancel() }
        try await Task.sleep(for: .seconds(2))
        for label in ["cold", "steady"] {
            var ids: [String] = []
            for index in 0..<24 {
                let answer = try await post(broker.baseURL + "/v1/queue/submit", ["model": "bench/estimate", "payload": ["i": .int(Int64(index))]])
                guard let id = answer.objectValue?["requestId"]?.stringValue else { throw BenchError("submit failed: \(answer)") }
                ids.append(id)
            }
            // Every 0.5 s, each job still waiting: its estimate and when it was read.
            var asked: [(id: String, estimate: Double?, at: ContinuousClock.Instant)] = []
            var waiting = Set(ids)
            while !waiting.isEmpty {
                for id in ids where waiting.contains(id) {
                    let status = try await get(broker.baseURL + "/v1/queue/status?model=bench%2Festimate&request_id=\(id)")
                    guard status.objectValue?["status"]?.stringValue == "pending" else {
                        waiting.remove(id)
                        continue
                    }
                    asked.append((id, status.objectValue?["estimated_wait_seconds"]?.doubleValue, .now))
                }
                try await Task.sleep(for: .milliseconds(500))
            }
            var errors: [Double] = []
            var started: [String: ContinuousClock.Instant] = [:]
            for id in ids { started[id] = try await starts.start(of: id, timeout: .seconds(60)) }
            for sample in asked {
                let real = (started[sample.id]! - sample.at).seconds
                guard real >= 0.25, let estimate = sample.estimate else { continue }
                errors.append(abs(estimate - real) / real)
            }
            let answered = asked.filter { $0.estimate != nil }.count
            errors.sort()
            if errors.isEmpty {
                print("  estimate: no \(label) estimate to compare (none answered, or every wait was under 0.25 s)")
            } else {
                report.add(
                    "estimate_error_\(label)_pct", errors[errors.count / 2] * 100,
                    "estimated wait: median relative error, \(label) (\(errors.count) estimates)", "%")
            }
            report.add(
                "estimate_answered_\(label)_pct", 100 * Double(answered) / Double(max(1, asked.count)),
                "estimated wait: reads answered with an estimate, \(label)", "%")
        }
    }

    // MARK: depth

    /// Claim (a lease over HTTP) and status latency with 1,000 and with 1,000,000 jobs waiting.
    func depth() async throws {
        let name = try await database.fresh("depth")
        for (label, waiting) in [("1k", 1000), ("1m", sizes.deepQueue)] {
            let already = try await database.withClient(database: name, connections: 1) { client in
                try await client.query("SELECT count(*) FROM jobs WHERE status = 'pending'", logger: logger).collect().first?.decode(Int.self) ?? 0
            }
            try await database.insertPending(waiting - already, model: "bench/depth", database: name)
            let broker = try await BrokerProcess(databaseURL: database.url(database: name))
            defer { broker.stop() }
            let ids = try await database.withClient(database: name, connections: 1) { client in
                var ids: [String] = []
                let rows = try await client.query(
                    "SELECT request_id::text FROM jobs WHERE status = 'pending' ORDER BY random() LIMIT \(sizes.depthSamples)", logger: logger)
                for try await id in rows.decode(String.self) { ids.append(id) }
                return ids
            }
            // One warm-up each: the first status of a deep queue reads its pending index once.
            _ = try await get(broker.baseURL + "/v1/queue/status?model=bench%2Fdepth&request_id=\(ids[0])")
            var claims = Latencies()
            var statuses = Latencies()
            for id in ids {
                let began = ContinuousClock.now
                let lease = try await post(
                    broker.baseURL + "/v1/worker/lease", ["worker_id": "depth", "models": ["bench/depth"], "max_jobs": 1, "lease_seconds": 60])
                claims.record(ContinuousClock.now - began)
                if let job = lease.objectValue?["jobs"]?.arrayValue?.first?.objectValue, let jobID = job["request_id"]?.stringValue {
                    _ = try await post(
                        broker.baseURL + "/v1/worker/jobs/\(jobID)/complete", ["lease_token": job["lease_token"] ?? .null, "outputs": [:]])
                }
                let statusBegan = ContinuousClock.now
                _ = try await get(broker.baseURL + "/v1/queue/status?model=bench%2Fdepth&request_id=\(id)")
                statuses.record(ContinuousClock.now - statusBegan)
            }
            let shown = label == "1k" ? "1,000" : waiting.formatted()
            report.add("claim_ms_at_\(label)", claims.ms(50), "claim (lease of one job over HTTP) p50, \(shown) waiting", "ms")
            report.add("status_ms_at_\(label)", statuses.ms(50), "status (with queue position) p50, \(shown) waiting", "ms")
        }
    }

    // MARK: memory

    /// Broker resident memory idle, and with `longPolls` workers waiting in long-polls.
    func memory() async throws {
        let name = try await database.fresh("memory")
        let broker = try await BrokerProcess(databaseURL: database.url(database: name))
        defer { broker.stop() }
        for _ in 0..<20 { _ = try await get(broker.baseURL + "/v1/queue/metrics?model=bench%2Fidle") }
        try await Task.sleep(for: .seconds(1))
        let idle = broker.residentMiB
        let polls = (0..<sizes.longPolls).map { index in
            Task {
                try await post(
                    broker.baseURL + "/v1/worker/lease",
                    ["worker_id": .string("poll-\(index)"), "models": ["bench/idle"], "wait_seconds": 30], timeout: .seconds(45))
            }
        }
        let deadline = ContinuousClock.now + .seconds(60)
        var open = 0
        while open < sizes.longPolls, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(200))
            let metrics = try await getText(broker.baseURL + "/metrics")
            open =
                metrics.split(separator: "\n").first { $0.hasPrefix("spool_long_polls_open ") }.flatMap {
                    Int(Double($0.split(separator: " ")[1]) ?? 0)
                } ?? 0
        }
        try await Task.sleep(for: .milliseconds(500))
        let loaded = broker.residentMiB
        for poll in polls { poll.cancel() }
        report.add("broker_rss_idle_mb", idle, "broker resident memory, idle", "MiB")
        report.add("broker_rss_1k_polls_mb", loaded, "broker resident memory with \(open) long-polls waiting", "MiB")
        report.add("broker_kb_per_long_poll", (loaded - idle) * 1024 / Double(max(open, 1)), "memory per waiting long-poll", "KiB")
    }

    // MARK: churn

    /// Pushes jobs through (insert, claim, complete, prune) and compares the table's size on disk
    /// with the size of the rows still live: how well the queue tables resist bloat.
    func churn() async throws {
        let name = try await database.fresh("churn")
        let keep = 10_000
        let batch = 1000
        let start = ContinuousClock.now
        try await database.withClient(database: name, connections: 4) { client in
            let jobs = JobsTable()
            var pushed = 0
            while pushed < sizes.churnJobs {
                try await client.query(
                    """
                    INSERT INTO jobs (request_id, model, priority, payload)
                    SELECT gen_random_uuid(), 'bench/churn', 0, jsonb_build_object('i', i) FROM generate_series(1, \(batch)) AS i
                    """, logger: logger)
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<4 {
                        group.addTask {
                            while true {
                                let claimed = try await jobs.claim(
                                    models: ["bench/churn"], limit: 100, leaseSeconds: 60, maxRunSeconds: 3600, workerID: "churn", on: client,
                                    logger: logger)
                                if claimed.isEmpty { return }
                                _ = try await jobs.completeMany(
                                    claimed.map { Completion(requestID: $0.requestID, leaseToken: $0.leaseToken, outputs: ["ok": true]) }, on: client,
                                    logger: logger)
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                pushed += batch
                // Retention: everything but the newest `keep` finished jobs goes, in the broker's batches.
                try await client.query(
                    """
                    DELETE FROM jobs WHERE id IN (
                        SELECT id FROM jobs WHERE status = 'done' ORDER BY id DESC OFFSET \(keep) LIMIT \(batch * 2) FOR UPDATE SKIP LOCKED)
                    """, logger: logger)
            }
        }
        let elapsed = ContinuousClock.now - start
        let sizesOnDisk = try await database.withClient(database: name, connections: 1) { client in
            try await client.query(
                """
                SELECT pg_relation_size('jobs'), pg_indexes_size('jobs'), pg_total_relation_size('jobs'),
                       (SELECT coalesce(sum(pg_column_size(j.*)), 0)::bigint FROM jobs j), (SELECT count(*) FROM jobs)
                """, logger: logger
            ).collect().first!.decode((Int64, Int64, Int64, Int64, Int).self)
        }
        let mib = { (bytes: Int64) in Double(bytes) / 1_048_576 }
        report.add(
            "churn_jobs_per_s", Double(sizes.churnJobs) / elapsed.seconds,
            "churn: \(sizes.churnJobs.formatted()) jobs inserted, claimed, completed, pruned", "jobs/s")
        report.add("churn_table_mb", mib(sizesOnDisk.0), "jobs table (heap) after the churn, \(sizesOnDisk.4) live rows", "MiB")
        report.add("churn_indexes_mb", mib(sizesOnDisk.1), "jobs indexes after the churn", "MiB")
        report.add("churn_live_rows_mb", mib(sizesOnDisk.3), "size of the live rows themselves", "MiB")
    }

    // MARK: batch

    /// A JSONL file of `batchLines` lines uploaded (multipart), then made a batch: how long until
    /// every line is validated and enqueued (the batch shows IN_PROGRESS).
    func batch() async throws {
        let name = try await database.fresh("batch")
        let broker = try await BrokerProcess(databaseURL: database.url(database: name))
        defer { broker.stop() }
        var content = ByteBuffer()
        for index in 0..<sizes.batchLines {
            let line: JSONValue = [
                "custom_id": .string("line-\(index)"),
                "body": ["model": "bench/batch", "payload": ["prompt": .string("a cat in a hat, take \(index)"), "steps": 30]],
            ]
            content.writeString(line.jsonText + "\n")
        }
        let fileBytes = content.readableBytes
        let boundary = "spool-bench"
        var body = ByteBuffer(string: "--\(boundary)\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n")
        body.writeString("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\n\r\n")
        body.writeBuffer(&content)
        body.writeString("\r\n--\(boundary)--\r\n")
        var request = HTTPClientRequest(url: broker.baseURL + "/v1/files")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
        request.body = .bytes(body)
        let uploadStart = ContinuousClock.now
        let response = try await http.execute(request, timeout: .seconds(600))
        let file = try JSONValue.parse(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        let uploaded = ContinuousClock.now - uploadStart
        guard let fileID = file.objectValue?["id"]?.stringValue else { throw BenchError("upload failed: \(file)") }

        let cpuBefore = CPUTimes.now(broker: broker.pid)
        let start = ContinuousClock.now
        let created = try await post(broker.baseURL + "/v1/batches", ["input_file_id": .string(fileID), "endpoint": "/v1/queue/submit"])
        guard let id = created.objectValue?["job"]?.objectValue?["id"]?.stringValue else { throw BenchError("batch create failed: \(created)") }
        var reads = Latencies()
        while true {
            let readStart = ContinuousClock.now
            let batch = try await get(broker.baseURL + "/v1/batches/\(id)")
            reads.record(ContinuousClock.now - readStart)
            let status = batch.objectValue?["status"]?.stringValue
            if status == "IN_PROGRESS" { break }
            guard status == "VALIDATING" else { throw BenchError("batch ended as \(status ?? "?"): \(batch)") }
            try await Task.sleep(for: .milliseconds(10))
        }
        let enqueued = ContinuousClock.now - start
        let cpu = CPUTimes.now(broker: broker.pid) - cpuBefore
        let megabytes = Double(fileBytes) / 1_048_576
        report.add(
            "batch_upload_mb_per_s", megabytes / uploaded.seconds,
            "batch: upload of a \(sizes.batchLines.formatted())-line JSONL file (\(String(format: "%.1f", megabytes)) MiB, multipart)", "MiB/s")
        report.add("batch_enqueue_s", enqueued.seconds, "batch: create → every line validated and enqueued (IN_PROGRESS)", "s")
        report.add(
            "batch_enqueue_lines_per_s", Double(sizes.batchLines) / enqueued.seconds, "batch: lines validated and enqueued per second", "lines/s")
        report.add(
            "batch_cpu_us_per_line", (cpu.postgres + cpu.broker) * 1_000_000 / Double(sizes.batchLines),
            "batch: broker + PostgreSQL CPU per line enqueued", "µs")
        report.add("batch_status_read_p50_ms", reads.ms(50), "batch: a status read while it validates, p50", "ms")
    }

    // MARK: fairness

    /// Tenant a has `fairBacklog` jobs waiting (through the submit statement itself); 4 workers
    /// work through them (10 ms each); then tenant b submits `fairLateJobs` over HTTP. Measured: how
    /// long until all of b's have started, and how many of a's started meanwhile, at a tenth of the
    /// backlog and at all of it: with fair share neither grows with a's backlog.
    func fairness() async throws {
        for backlog in [sizes.fairBacklog / 10, sizes.fairBacklog] {
            let name = try await database.fresh("fair")
            try await database.withClient(database: name, connections: 1) { client in
                let store = Store(client: client)
                var left = backlog
                while left > 0 {
                    let count = min(5000, left)
                    let jobs = (0..<count).map { _ in
                        NewJob(request: SubmitRequest(model: "bench/fair", payload: [:]), requestID: UUID(), submittedBy: "a", tenant: "a")
                    }
                    try await store.jobs.insertMany(jobs, on: client, logger: logger)
                    left -= count
                }
                try await client.query("VACUUM (ANALYZE) jobs", logger: logger)
            }
            // The broker's configured key is tenant 'default': tenant b here.
            let key = "bench-\(UUID().uuidString)"
            let broker = try await BrokerProcess(databaseURL: database.url(database: name), arguments: ["--api-key", key])
            defer { broker.stop() }
            var configuration = WorkerConfiguration(brokerURLs: [broker.baseURL], models: ["bench/fair"])
            configuration.apiKey = key
            configuration.waitSeconds = 5
            let starts = StartSignals()
            let workers = try (0..<4).map { _ in
                try Worker(configuration: configuration, handler: Working(starts: starts, milliseconds: 10), logger: logger)
            }
            let running = workers.map { worker in Task { try await worker.run() } }
            defer { for task in running { task.cancel() } }
            try await Task.sleep(for: .seconds(2))
            let submitted = ContinuousClock.now
            var ids: [String] = []
            for index in 0..<sizes.fairLateJobs {
                let answer = try await post(
                    broker.baseURL + "/v1/queue/submit", ["model": "bench/fair", "payload": ["i": .int(Int64(index))]], key: key)
                guard let id = answer.objectValue?["requestId"]?.stringValue else { throw BenchError("submit failed: \(answer)") }
                ids.append(id)
            }
            var last = submitted
            for id in ids { last = max(last, try await starts.start(of: id, timeout: .seconds(600))) }
            let (meanwhile, waiting) = try await database.withClient(database: name, connections: 1) { client in
                try await client.query(
                    """
                    WITH late AS (SELECT min(created_at) AS first, max(claimed_at) AS last FROM jobs WHERE tenant = 'default')
                    SELECT (SELECT count(*) FROM jobs, late WHERE tenant = 'a' AND claimed_at BETWEEN late.first AND late.last),
                           (SELECT count(*) FROM jobs, late WHERE tenant = 'a' AND (claimed_at IS NULL OR claimed_at > late.first))
                    FROM late
                    """, logger: logger
                ).collect().first?.decode((Int, Int).self) ?? (0, 0)
            }
            let window = (last - submitted).seconds
            let label = backlog >= 1000 ? "\(backlog / 1000)k" : "\(backlog)"
            report.add(
                "fair_late_all_started_s_at_\(label)", window,
                "fairness: submit of b's first to start of b's last of \(sizes.fairLateJobs), behind a's \(backlog.formatted()) (4 workers, 10 ms jobs)",
                "s")
            report.add("fair_backlog_started_meanwhile_at_\(label)", Double(meanwhile), "fairness: a's jobs started in that time", "jobs")
            report.add(
                "fair_fifo_wait_s_at_\(label)", Double(waiting) / max(Double(meanwhile) / window, 1),
                "fairness: what b's last would have waited first-in-first-out (a's \(waiting.formatted()) waiting at that rate)", "s")
        }
    }

    // MARK: HTTP

    func post(_ url: String, _ body: JSONValue, key: String? = nil, timeout: Duration = .seconds(60)) async throws -> JSONValue {
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        if let key { request.headers.add(name: "Authorization", value: "Bearer \(key)") }
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body.jsonText))
        let response = try await http.execute(request, timeout: .init(timeout))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return bytes.readableBytes == 0 ? .null : try JSONValue.parse(bytes.readableBytesView)
    }

    func get(_ url: String) async throws -> JSONValue {
        let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        return try JSONValue.parse(bytes.readableBytesView)
    }

    func getText(_ url: String) async throws -> String {
        let response = try await http.execute(HTTPClientRequest(url: url), timeout: .seconds(60))
        return String(buffer: try await response.body.collect(upTo: 16 << 20))
    }
}

struct NoOp: JobHandler {
    func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] { [:] }
}

/// Records when each job's handler started, and wakes whoever waits for it.
final class StartSignals: Sendable {
    private typealias Waiter = CheckedContinuation<ContinuousClock.Instant?, Never>
    private let state = Mutex<(starts: [String: ContinuousClock.Instant], waiters: [String: Waiter])>(([:], [:]))

    func record(_ id: String) {
        let now = ContinuousClock.now
        let waiter = state.withLock { state -> Waiter? in
            if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
            state.starts[id] = now
            return nil
        }
        waiter?.resume(returning: now)
    }

    func start(of id: String, timeout: Duration) async throws -> ContinuousClock.Instant {
        let timer = Task {
            try await Task.sleep(for: timeout)
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: nil)
        }
        defer { timer.cancel() }
        let start = await withCheckedContinuation { (continuation: Waiter) in
            let known = state.withLock { state -> ContinuousClock.Instant? in
                if let start = state.starts.removeValue(forKey: id) { return start }
                state.waiters[id] = continuation
                return nil
            }
            if let known { continuation.resume(returning: known) }
        }
        guard let start else { throw BenchError("job \(id) did not start within \(timeout)") }
        return start
    }
}

/// Records each start, then works for a fixed time (none: it only records): a GPU job in miniature.
struct Working: JobHandler {
    let starts: StartSignals
    var milliseconds = 0
    func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] {
        starts.record(job.requestID)
        if milliseconds > 0 { try await Task.sleep(for: .milliseconds(milliseconds)) }
        return [:]
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        self = .nanoseconds(duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000)
    }
}

/// A value several tasks add to.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<Result: Sendable>(_ body: (inout sending Value) -> sending Result) -> Result { mutex.withLock(body) }
}
