import ArgumentParser
import Foundation
import SpoolClient

#if canImport(Glibc)
import Glibc
#endif

/// `spool`: the command-line client.
@main
struct SpoolCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool",
        abstract: "Submit, watch and manage Spool jobs from the command line.",
        discussion: """
            The broker URL and key come from --broker and --api-key, or SPOOL_BROKER_URL (the first of a comma-separated \
            list) and SPOOL_API_KEY, as spool-worker reads them. --json prints machine-readable answers.
            Exit codes: 0 success; 1 the job failed or was canceled (watch, status --wait); 2 the broker refused the request \
            (4xx: bad input, unknown job, bad key); 3 the broker could not be reached or failed (5xx); 64 bad usage.
            """,
        subcommands: [
            Submit.self, Status.self, Watch.self, Cancel.self, Requeue.self, Clear.self, Jobs.self, Metrics.self, Workers.self, Keys.self, Audit.self,
        ])
}

/// The job a command is about: its request id, and its model (the broker's routes are per model).
struct JobOptions: ParsableArguments {
    @Argument(help: "The job's request id.") var requestID: String
    @Option(help: "The job's model.") var model: String
}

/// Where the broker is and how to talk to it; every subcommand takes these.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Broker URL. Env: SPOOL_BROKER_URL. Default: http://127.0.0.1:8080.")
    var broker: String?

    @Option(help: "API key. Env: SPOOL_API_KEY.")
    var apiKey: String?

    @Option(help: "PEM file of certificate authorities to trust for an https broker. Env: SPOOL_CA_FILE.")
    var caFile: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    func client() -> BrokerClient {
        let environment = ProcessInfo.processInfo.environment
        let url = broker ?? environment["SPOOL_BROKER_URL"]?.split(separator: ",").first.map(String.init) ?? "http://127.0.0.1:8080"
        return BrokerClient(
            baseURL: url.trimmingCharacters(in: .whitespaces), apiKey: apiKey ?? environment["SPOOL_API_KEY"].flatMap { $0.isEmpty ? nil : $0 },
            caFile: caFile ?? environment["SPOOL_CA_FILE"].flatMap { $0.isEmpty ? nil : $0 })
    }
}

/// Runs `body` with a client and turns its errors into the documented exit codes.
func withClient(_ options: ConnectionOptions, _ body: (BrokerClient) async throws -> Void) async throws {
    let client = options.client()
    do {
        try await body(client)
        try? await client.shutdown()
    } catch let error as SpoolClientError {
        try? await client.shutdown()
        printError(error.description)
        throw ExitCode(error.status.map { $0 < 500 ? 2 : 3 } ?? 3)
    } catch {
        try? await client.shutdown()
        throw error
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("spool: \(message)\n".utf8))
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

func parseObject(_ text: String, option: String) throws -> [String: JSONValue] {
    guard let object = (try? JSONValue.parse(text))?.objectValue else {
        throw ValidationError("\(option) must be a JSON object, such as '{\"prompt\": \"a cat\"}'.")
    }
    return object
}

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit one job, or one per line of a JSONL file.",
        discussion: """
            With --file, each line is a JSON object: either the payload itself, or a submit request with "payload" and \
            optionally "priority", "info" and "model". Prints the request ids, one per line.
            """)

    @Option(help: "The model (or fal app id) to run the job on.") var model: String
    @Option(help: "The job's input, a JSON object.") var payload: String?
    @Option(help: "A JSONL file of jobs; '-' reads standard input.") var file: String?
    @Option(help: "Priority: higher runs first. Default: 0.") var priority: Int32 = 0
    @Option(help: "Metadata stored with the job, a JSON object.") var info: String?
    @Option(help: "A URL to call when the job ends.") var webhook: String?
    @Option(help: "Makes a retried submit safe: the same key returns the first job. With --file, job N (from 0) gets the key '<key>-N'.")
    var idempotencyKey: String?
    @Option(help: "Requests at once for --file, each a bulk submit of up to 1,000 jobs. Default: 8.") var concurrency: Int = 8
    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        guard (payload == nil) != (file == nil) else { throw ValidationError("Give --payload for one job or --file for many.") }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be between 1 and 64.") }
    }

    func run() async throws {
        let info = try self.info.map { try parseObject($0, option: "--info") } ?? [:]
        var jobs: [SubmitRequest] = []
        if let payload {
            jobs = [
                SubmitRequest(
                    model: model, payload: try parseObject(payload, option: "--payload"), info: info, priority: priority, webhookURL: webhook)
            ]
        } else if let file {
            jobs = try readJobs(file, defaults: SubmitRequest(model: model, payload: [:], info: info, priority: priority, webhookURL: webhook))
        }
        try await withClient(connection) { client in
            let ids = try await submitAll(jobs, client: client)
            if connection.json { try printJSON(ids) } else { for id in ids { print(id) } }
        }
    }

    func readJobs(_ path: String, defaults: SubmitRequest) throws -> [SubmitRequest] {
        let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: path))
        var jobs: [SubmitRequest] = []
        for (index, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            guard let object = (try? JSONValue.parse(text))?.objectValue else {
                throw ValidationError("Line \(index + 1) of \(path) is not a JSON object.")
            }
            var job = defaults
            if case .object(let payload)? = object["payload"] {
                job.payload = payload
                if case .int(let priority)? = object["priority"], let small = Int32(exactly: priority) { job.priority = small }
                if case .object(let info)? = object["info"] { job.info = info }
                if case .string(let model)? = object["model"] { job.model = model }
            } else {
                job.payload = object
            }
            jobs.append(job)
        }
        return jobs
    }

    /// One job: a plain submit. Many: bulk submits of up to 1,000 jobs each (one statement per
    /// request), `concurrency` requests in flight; ids come back in the file's order.
    func submitAll(_ jobs: [SubmitRequest], client: BrokerClient) async throws -> [String] {
        if jobs.count == 1 { return [try await client.submit(jobs[0], idempotencyKey: idempotencyKey)] }
        let progress = Progress(total: jobs.count, enabled: true)
        let chunks = stride(from: 0, to: jobs.count, by: BulkSubmitItem.maxJobs).map { $0..<min($0 + BulkSubmitItem.maxJobs, jobs.count) }
        var ids = [[String]](repeating: [], count: chunks.count)
        try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
            var next = 0
            func add() {
                guard next < chunks.count else { return }
                let chunk = next
                next += 1
                let range = chunks[chunk]
                // Each job's key is the given key and its line's index, so a rerun of the file replays every job.
                let keys = idempotencyKey.map { key in range.map { Optional("\(key)-\($0)") } }
                group.addTask { (chunk, try await client.submitMany(Array(jobs[range]), idempotencyKeys: keys)) }
            }
            for _ in 0..<concurrency { add() }
            while let (chunk, chunkIDs) = try await group.next() {
                ids[chunk] = chunkIDs
                progress.advance(by: chunkIDs.count)
                add()
            }
        }
        progress.finish()
        return ids.flatMap { $0 }
    }
}

/// A progress bar on standard error: `[=====>    ] 500/1000  250 jobs/s`.
final class Progress: @unchecked Sendable {
    let total: Int
    let enabled: Bool
    let start = Date()
    var done = 0
    var lastDrawn = Date.distantPast

    init(total: Int, enabled: Bool) {
        self.total = total
        self.enabled = enabled
    }

    func advance(by count: Int = 1) {
        done += count
        if enabled, done == total || Date().timeIntervalSince(lastDrawn) > 0.1 { draw() }
    }

    func finish() {
        guard enabled else { return }
        draw()
        FileHandle.standardError.write(Data("\n".utf8))
    }

    private func draw() {
        lastDrawn = Date()
        let width = 30
        let filled = total == 0 ? width : width * done / total
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
        let rate = Double(done) / max(Date().timeIntervalSince(start), 0.001)
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)/\(total)  \(Int(rate)) jobs/s".utf8))
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a job's status.")
    @OptionGroup var job: JobOptions
    @Flag(help: "Include its log lines.") var logs = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await withClient(connection) { client in
            let status = try await client.status(model: job.model, requestID: job.requestID, logs: logs)
            if connection.json { try printJSON(status) } else { print(describe(status)) }
        }
    }
}

/// A job's status in a few lines of text.
func describe(_ status: JobStatusResponse) -> String {
    var lines = ["\(status.request_id)  \(status.model)  \(status.status.rawValue)  priority \(status.priority)  retries \(status.retries)"]
    if let position = status.queue_position {
        lines.append("  queue position \(position)" + (status.estimated_wait_seconds.map { String(format: ", starts in about %.0f s", $0) } ?? ""))
    }
    if let progress = status.info["progress"] { lines.append("  progress \(progress.jsonText)") }
    if let outputs = status.outputs { lines.append("  outputs \(JSONValue.object(outputs).jsonText)") }
    if let error = status.error { lines.append("  error \(status.error_type.map { "[\($0)] " } ?? "")\(error)") }
    for warning in status.warnings { lines.append("  warning: \(warning)") }
    for line in status.logs ?? [] { lines.append("  \(line.timestamp ?? "")  \(line.level)  \(line.message)") }
    return lines.joined(separator: "\n")
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow a job live: status, progress and log lines until it ends.",
        discussion: "Exits 0 when the job is done, 1 when it failed or was canceled.")
    @OptionGroup var job: JobOptions
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        var final: JobStatusResponse?
        try await withClient(connection) { client in
            var printedLogs = 0
            var lastLine = ""
            for try await status in client.watch(model: job.model, requestID: job.requestID, logs: true) {
                final = status
                if connection.json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                    print(String(decoding: try encoder.encode(status), as: UTF8.self))
                    continue
                }
                var line = status.status.rawValue
                if let position = status.queue_position { line += "  position \(position)" }
                if let progress = status.info["progress"] { line += "  progress \(progress.jsonText)" }
                if line != lastLine {
                    print(line)
                    lastLine = line
                }
                let logs = status.logs ?? []
                for log in logs.dropFirst(printedLogs) { print("  \(log.level)  \(log.message)") }
                printedLogs = max(printedLogs, logs.count)
            }
            if let final, !connection.json {
                if let outputs = final.outputs { print("outputs \(JSONValue.object(outputs).jsonText)") }
                if let error = final.error { print("error \(error)") }
            }
        }
        if let final, final.status != .done { throw ExitCode(1) }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a pending job (with --running, ask a running one to stop).")
    @OptionGroup var job: JobOptions
    @Flag(help: "Ask a running job's worker to stop; it ends canceled.") var running = false
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await withClient(connection) { client in
            let answer = try await client.cancel(model: job.model, requestID: job.requestID, running: running)
            if connection.json {
                try printJSON(answer)
            } else {
                print(answer.cancel_requested == true ? "stop requested: the job ends canceled when its worker stops" : answer.status.rawValue)
            }
        }
    }
}

struct Requeue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a failed job back to the queue for a new attempt (an admin key); its retry history is kept.")
    @OptionGroup var job: JobOptions
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await withClient(connection) { client in
            let answer = try await client.requeue(model: job.model, requestID: job.requestID)
            if connection.json { try printJSON(answer) } else { print(answer.objectValue?["status"]?.stringValue ?? "pending") }
        }
    }
}

struct Jobs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List jobs, newest first: a page at a time, filtered (GET /v1/jobs).",
        discussion: "Prints the next page's cursor when there is one: pass it to --cursor with the same filters.")
    @Option(help: "Only this model's jobs.") var model: String?
    @Option(help: "Only jobs in this status: pending, running, done, failed, canceled.") var status: String?
    @Option(help: "Only jobs of this priority.") var priority: Int?
    @Option(help: "Only jobs created at or after this RFC 3339 time.") var createdAfter: String?
    @Option(help: "Only jobs created before this RFC 3339 time.") var createdBefore: String?
    @Option(help: "Only jobs whose request id starts with these hex digits (then in request-id order).") var requestID: String?
    @Option(help: "Where the page starts: the cursor a previous page printed.") var cursor: String?
    @Option(help: "Jobs a page (1–200).") var limit = 50
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        var filters: [(String, String)] = [("limit", String(limit))]
        for (name, value) in [
            ("model", model), ("status", status), ("priority", priority.map(String.init)), ("created_after", createdAfter),
            ("created_before", createdBefore), ("request_id", requestID), ("cursor", cursor),
        ] {
            if let value { filters.append((name, value)) }
        }
        try await withClient(connection) { client in
            let page = try await client.jobs(filters)
            if connection.json {
                return try printJSON(JSONValue.object(["data": .array(page.rows), "next_cursor": page.nextCursor.map(JSONValue.string) ?? .null]))
            }
            var rows = [["REQUEST ID", "MODEL", "STATUS", "PRIORITY", "CREATED", "DONE"]]
            for row in page.rows {
                let fields = row.objectValue ?? [:]
                rows.append(
                    ["request_id", "model", "status", "priority", "created_at", "done_at"].map { name in
                        switch fields[name] {
                        case .string(let text)?: text
                        case .int(let number)?: String(number)
                        default: "-"
                        }
                    })
            }
            printTable(rows)
            if let next = page.nextCursor { print("more: --cursor \(next)") }
        }
    }
}

struct Clear: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel every pending job of a model.")
    @Option(help: "The model.") var model: String
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await withClient(connection) { client in
            let count = try await client.clear(model: model)
            if connection.json { try printJSON(ClearResponse(canceled_count: count)) } else { print("canceled \(count) pending jobs") }
        }
    }
}

struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue depth: a table of every model, or one model's figures.")
    @Option(help: "One model only.") var model: String?
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await withClient(connection) { client in
            if let model {
                let metrics = try await client.metrics(model: model)
                if connection.json {
                    try printJSON(metrics)
                } else {
                    print("\(model)  waiting \(metrics.messages_waiting)  running \(metrics.messages_running)  total \(metrics.total_jobs)")
                }
                return
            }
            try printList(try await client.models(), json: connection.json, header: ["MODEL", "WAITING", "RUNNING", "OLDEST WAIT", "LIVE WORKERS"]) {
                [
                    $0.model, String($0.messages_waiting), String($0.messages_running), String(format: "%.0f s", $0.oldest_waiting_seconds),
                    String($0.live_workers),
                ]
            }
        }
    }
}

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The workers brokers have seen in the last day.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await withClient(connection) { client in
            try printList(try await client.workers(), json: connection.json, header: ["WORKER", "HOST", "MODELS", "LAST SEEN", "STATE", "JOBS"]) {
                worker in
                let state = worker.live ? (worker.waiting ? "waiting" : "live") : "gone"
                return [
                    worker.id, worker.host ?? "-", worker.models.joined(separator: ","), worker.last_seen_at, state, String(worker.jobs_in_hand),
                ]
            }
        }
    }
}

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "API keys over the admin API (an admin key): create, list, revoke.", subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create a key; its answer shows the key once.")
        @Option(help: "A name to recognise the key by.") var name: String
        @Option(help: "What the key may do, comma-separated: client, worker, admin.") var scopes: String
        @Option(help: "The tenant a client key belongs to.") var tenant: String?
        @Option(help: "Model patterns a worker key serves, comma-separated ('acme/*').") var models: String?
        @Option(help: "When the key stops working: a duration from now (90d, 12h, 30m) or an RFC 3339 time.") var expires: String?
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            let request: CreateKeyRequest
            do {
                request = try CreateKeyRequest(name: name, scopes: scopes, tenant: tenant, models: models, expires: expires)
            } catch {
                throw ValidationError(error.message)
            }
            try await withClient(connection) { client in
                let key = try await client.createKey(request)
                if connection.json { return try printJSON(key) }
                let fields = key.objectValue ?? [:]
                print("id: \(fields["id"]?.stringValue ?? "")\nkey: \(fields["key"]?.stringValue ?? "")")
                print("Store the key now: it cannot be shown again.")
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Live keys: ids, names, scopes (never the keys).")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await withClient(connection) { client in
                try printList(try await client.keys(), json: connection.json, header: ["ID", "NAME", "SCOPES", "TENANT", "MODELS", "EXPIRES"]) {
                    key in
                    let fields = key.objectValue ?? [:]
                    let list = { (name: String) in fields[name]?.arrayValue?.compactMap(\.stringValue).joined(separator: ",") }
                    return [
                        fields["id"]?.stringValue ?? "", fields["name"]?.stringValue ?? "", list("scopes") ?? "",
                        fields["tenant"]?.stringValue ?? "-", list("models") ?? "*", fields["expires_at"]?.stringValue ?? "never",
                    ]
                }
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke a key by id: every replica refuses it within a second.")
        @Argument(help: "The key's id.") var id: String
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            try await withClient(connection) { client in
                try await client.revokeKey(id: id)
                print("revoked \(id)")
            }
        }
    }
}

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "What admin keys did, newest first (an admin key).")
    @Option(help: "How many events.") var limit = 100
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        try await withClient(connection) { client in
            try printList(try await client.audit(limit: limit), json: connection.json, header: ["AT", "ACTOR", "ACTION", "TARGET"]) { event in
                let fields = event.objectValue ?? [:]
                return [
                    fields["at"]?.stringValue ?? "", fields["actor"]?.stringValue ?? "", fields["action"]?.stringValue ?? "",
                    fields["target"]?.stringValue ?? "-",
                ]
            }
        }
    }
}

/// A list: as JSON with --json, else a table under `header`, a row an item.
func printList<Item: Encodable>(_ items: [Item], json: Bool, header: [String], row: (Item) -> [String]) throws {
    if json { return try printJSON(items) }
    printTable([header] + items.map(row))
}

func printTable(_ rows: [[String]]) {
    guard let first = rows.first else { return }
    let widths = first.indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
    for row in rows {
        print(row.enumerated().map { $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}
