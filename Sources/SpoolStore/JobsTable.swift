import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// A job as stored, for status reads.
package struct JobRecord: Sendable, Equatable {
    /// Submission order (the claim's FIFO order within a priority).
    package var id: Int64
    package var requestID: UUID
    package var model: String
    package var status: JobStatus
    package var priority: Int32
    package var payload: [String: JSONValue]
    package var info: [String: JSONValue]
    package var outputs: [String: JSONValue]?
    package var error: String?
    package var retries: Int32
    package var createdAt: Date
    package var claimedAt: Date?
    package var doneAt: Date?
    /// Attempts so far: 0 until the first claim.
    package var attempt: Int32
    /// Set while a running job is asked to stop.
    package var stopReason: StopReason?
    /// The endpoint within the app, for fal's `/{owner}/{app}/{path}`.
    package var path: String?
    /// Why a failed job failed, as a code (`runner_error`, `runner_disconnected`, `runner_timeout`, `request_timeout`).
    package var errorType: String?
    /// Where the job's terminal state is delivered, if anywhere.
    package var webhookURL: String?
    /// The tenant whose job it is.
    package var tenant: String
    /// Its place within its priority: the claim takes the smallest tag first (fair share).
    package var fairTag: Double
}

/// What a cancel found.
package enum CancelOutcome: Sendable, Equatable {
    /// The job was pending and is now canceled.
    case canceled
    /// The job was running and is now asked to stop; it ends `canceled` when its worker stops.
    case stopRequested
    /// The job had left `pending` (or was running and stopping running jobs was not asked for);
    /// it is unchanged and has this status.
    case unchanged(JobStatus)
    /// No job with that request id exists for that model.
    case notFound
}

/// The `jobs` table: every query on it, each written once.
package struct JobsTable: Sendable {
    package init() {}

    /// The channel that carries a model name whenever jobs of that model become pending.
    ///
    /// Brokers LISTEN on it to wake their waiting leases. NOTIFY is sent by the statement that
    /// makes the job pending, so it is delivered at commit, and PostgreSQL folds repeats of one
    /// model within a transaction into one.
    package static let pendingChannel = "spool_pending"

    /// Inserts a pending job and wakes the workers waiting for its model.
    package func insert(
        _ submit: SubmitRequest, requestID: UUID, submittedBy: String, tenant: String = NewJob.defaultTenant, weight: Double = 1,
        on database: some PostgresQueryable, logger: Logger
    ) async throws {
        try await insertMany(
            [NewJob(request: submit, requestID: requestID, submittedBy: submittedBy, tenant: tenant, weight: weight)], on: database,
            logger: logger)
    }

    /// Inserts jobs in one statement, ids in the order given, and wakes each model's waiting leases once.
    package func insertMany(_ jobs: [NewJob], on database: some PostgresQueryable, logger: Logger) async throws {
        guard !jobs.isEmpty else { return }
        for try await _ in try await database.run(InsertJobsStatement(jobs: jobs), logger: logger) {}
    }

    /// The job with this request id, if it belongs to `model` and to `tenant` (nil: any tenant):
    /// another tenant's job reads exactly as no job, from the same statement.
    package func find(
        model: String, requestID: UUID, tenant: String?, on database: some PostgresQueryable, logger: Logger
    ) async throws -> JobRecord? {
        // Prepared: every status read runs it, and planning it each time cost more than running it.
        let rows = try await database.run(FindJobStatement(requestID: requestID, model: model, tenant: tenant), logger: logger)
        for try await row in rows {
            return JobRecord(
                id: row.0, requestID: row.1, model: row.2, status: try Self.status(row.3), priority: row.4,
                payload: try Self.object(row.5), info: try Self.object(row.6), outputs: try row.7.map(Self.object),
                error: row.8, retries: row.9, createdAt: row.10, claimedAt: row.11, doneAt: row.12, attempt: row.13,
                stopReason: row.14.flatMap(StopReason.init(rawValue:)), path: row.15, errorType: row.16, webhookURL: row.17,
                tenant: row.18, fairTag: row.19)
        }
        return nil
    }

    /// Cancels a pending job. With `stopRunning`, a running job is asked to stop instead (its
    /// worker hears it at the next heartbeat, and its lease is cut to `graceSeconds`); it ends
    /// `canceled` when the worker stops. Any other status is left as it is and reported.
    ///
    /// With `auditActor` (an operator's cancel), the audit trail records the cancel or the stop in
    /// the same statement.
    package func cancel(
        model: String, requestID: UUID, tenant: String?, stopRunning: Bool = false, graceSeconds: Double = 30, auditActor: String? = nil,
        on database: some PostgresQueryable, logger: Logger
    ) async throws -> CancelOutcome {
        // A claim that commits while this statement waits for the row leaves the last SELECT (which
        // reads the statement's snapshot) seeing 'pending' although the UPDATE found it running:
        // the job's real state is then read by a fresh statement.
        for _ in 0..<5 {
            let outcome = try await cancelOnce(
                model: model, requestID: requestID, tenant: tenant, stopRunning: stopRunning, graceSeconds: graceSeconds,
                auditActor: auditActor, on: database, logger: logger)
            if outcome != .unchanged(.pending) { return outcome }
        }
        throw SpoolStoreError(description: "A cancel kept finding job \(requestID) pending without canceling it.")
    }

    private func cancelOnce(
        model: String, requestID: UUID, tenant: String?, stopRunning: Bool, graceSeconds: Double, auditActor: String?,
        on database: some PostgresQueryable, logger: Logger
    ) async throws -> CancelOutcome {
        // One statement: each UPDATE touches only the status it names; the last SELECT reports
        // what the job was when neither applied.
        let (cancel, stop) = (JobStateMachine.edge(.cancel), JobStateMachine.edge(.askToStop))
        let rows = try await database.run(
            """
            WITH canceled AS (
                UPDATE jobs SET status = \(cancel.to), done_at = now()
                WHERE request_id = \(requestID) AND model = \(model) AND status = \(cancel.from)
                  AND (\(tenant)::text IS NULL OR tenant = \(tenant))
                RETURNING 'now_canceled'::text AS outcome
            ), stopping AS (
                UPDATE jobs SET stop_reason = 'canceled',
                                lease_expires_at = least(lease_expires_at, now() + make_interval(secs => \(graceSeconds)))
                WHERE request_id = \(requestID) AND model = \(model) AND status = \(stop.from) AND \(stopRunning)
                  AND (\(tenant)::text IS NULL OR tenant = \(tenant))
                RETURNING 'now_stopping'::text AS outcome
            ), audited AS (
                INSERT INTO audit_events (actor, action, target, details)
                SELECT \(auditActor), CASE outcome WHEN 'now_canceled' THEN 'job.canceled' ELSE 'job.stop_requested' END,
                       \(requestID.uuidString.lowercased()), jsonb_build_object('model', \(model)::text)
                FROM (SELECT outcome FROM canceled UNION ALL SELECT outcome FROM stopping) AS done
                WHERE \(auditActor)::text IS NOT NULL
            )
            SELECT outcome FROM canceled
            UNION ALL SELECT outcome FROM stopping
            UNION ALL
            SELECT status FROM jobs
            WHERE request_id = \(requestID) AND model = \(model) AND (\(tenant)::text IS NULL OR tenant = \(tenant))
              AND NOT EXISTS (SELECT 1 FROM canceled) AND NOT EXISTS (SELECT 1 FROM stopping)
            """, logger: logger)
        for try await outcome in rows.decode(String.self) {
            switch outcome {
            case "now_canceled": return .canceled
            case "now_stopping": return .stopRequested
            default: return .unchanged(try Self.status(outcome))
            }
        }
        return .notFound
    }

    /// Keeps changes to a job announced on `spool_job` for `seconds` more: a status stream is open.
    package func watch(requestID: UUID, seconds: Double, on database: some PostgresQueryable, logger: Logger) async throws {
        try await database.run(
            """
            UPDATE jobs SET watched_until = now() + make_interval(secs => \(seconds))
            WHERE request_id = \(requestID) AND status IN ('pending', 'running')
            """, logger: logger)
    }

    /// The channel that carries a watched job's request id whenever its row changes.
    package static let watchedJobChannel = "spool_job"

    /// A job's model, if the job exists: what a worker key's model patterns are checked against.
    package func model(of requestID: UUID, on database: some PostgresQueryable, logger: Logger) async throws -> String? {
        try await database.run("SELECT model FROM jobs WHERE request_id = \(requestID)", logger: logger)
            .collect().first?.decode(String.self)
    }

    /// Cancels every pending job of a model (of one tenant's, when `tenant` is given), recording
    /// who did it in the audit trail in the same statement; returns how many.
    package func cancelPending(
        model: String, tenant: String? = nil, actor: String, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Int {
        let cancel = JobStateMachine.edge(.cancel)
        let rows = try await database.run(
            """
            WITH canceled AS (
                UPDATE jobs SET status = \(cancel.to), done_at = now()
                WHERE model = \(model) AND status = \(cancel.from) AND (\(tenant)::text IS NULL OR tenant = \(tenant))
                RETURNING 1
            ), counted AS (
                SELECT count(*) AS jobs FROM canceled
            ), audited AS (
                INSERT INTO audit_events (actor, action, target, details)
                SELECT \(actor), 'queue.cleared', \(model),
                       jsonb_strip_nulls(jsonb_build_object('canceled_count', jobs, 'tenant', \(tenant)::text)) FROM counted
            )
            SELECT jobs FROM counted
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }

    /// Jobs waiting and running for a model, each counted from its own partial index.
    package func depth(model: String, on database: some PostgresQueryable, logger: Logger) async throws -> (waiting: Int, running: Int) {
        let rows = try await database.run(
            """
            SELECT (SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'pending'),
                   (SELECT count(*) FROM jobs WHERE model = \(model) AND status = 'running')
            """, logger: logger)
        let row = try await rows.collect().first?.decode((Int, Int).self) ?? (0, 0)
        return (row.0, row.1)
    }

    static func status(_ text: String) throws -> JobStatus {
        guard let status = JobStatus(rawValue: text) else {
            throw SpoolStoreError(description: "The jobs table holds an unknown status '\(text)'.")
        }
        return status
    }

    static func object(_ text: String) throws -> [String: JSONValue] {
        try JSONValue.parse(text).objectValue ?? [:]
    }
}

/// A job to insert: what was submitted, its new request id, and who submitted it.
package struct NewJob: Sendable {
    /// The tenant of a key that names none, and of every job from before tenants.
    package static let defaultTenant = "default"

    package var request: SubmitRequest
    package var requestID: UUID
    package var submittedBy: String
    package var tenant: String
    /// The tenant's fair-share weight: a tenant of weight 2 starts two jobs for another's one.
    package var weight: Double

    package init(request: SubmitRequest, requestID: UUID, submittedBy: String, tenant: String = defaultTenant, weight: Double = 1) {
        self.request = request
        self.requestID = requestID
        self.submittedBy = submittedBy
        self.tenant = tenant
        self.weight = weight
    }
}

/// The insert of one or many submitted jobs, prepared once per connection. Optional columns travel
/// as empty strings and negative timeouts, since the arrays hold no NULLs.
///
/// Each array is read through a sub-select, which hides its length from the planner: otherwise
/// every execution's own plan (sized to its arrays) looked cheaper than the shared one, and
/// PostgreSQL planned every submit again, 0.8 ms of the 1.4 ms a one-job insert cost.
struct InsertJobsStatement: PostgresPreparedStatement {
    static let name = "spool_insert_jobs_v4"
    static let sql = """
        WITH item AS (
            SELECT * FROM unnest((SELECT $1::uuid[]), (SELECT $2::text[]), (SELECT $3::int4[]), (SELECT $4::text[]),
                                 (SELECT $5::text[]), (SELECT $6::text[]), (SELECT $7::text[]), (SELECT $8::float8[]),
                                 (SELECT $9::text[]), (SELECT $10::text[]), (SELECT $11::text[]), (SELECT $12::float8[]),
                                 (SELECT $13::float8[]))
                 WITH ORDINALITY AS item(request_id, model, priority, payload, info, submitted_by, path, start_timeout,
                                         webhook_url, webhook_format, tenant, weight, max_run, arrival)
        ), \(JobsTable.fairTagsSQL),
        inserted AS (
            INSERT INTO jobs (request_id, model, priority, payload, info, submitted_by, path, start_deadline_at,
                              webhook_url, webhook_format, tenant, fair_tag, max_run_seconds)
            SELECT item.request_id, item.model, item.priority, item.payload::jsonb, item.info::jsonb, item.submitted_by,
                   nullif(item.path, ''),
                   CASE WHEN item.start_timeout >= 0 THEN now() + make_interval(secs => item.start_timeout) END,
                   nullif(item.webhook_url, ''), nullif(item.webhook_format, ''), item.tenant, \(JobsTable.fairTagSQL),
                   CASE WHEN item.max_run > 0 THEN item.max_run END
            FROM item JOIN tags USING (model, priority, tenant)
            ORDER BY item.arrival
            RETURNING model
        )
        SELECT pg_notify('\(JobsTable.pendingChannel)', model) FROM (SELECT DISTINCT model FROM inserted) AS models
        """
    typealias Row = ()

    var jobs: [NewJob]

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 13)
        bindings.append(jobs.map(\.requestID))
        bindings.append(jobs.map(\.request.model))
        bindings.append(jobs.map(\.request.priority))
        bindings.append(jobs.map { JSONValue.object($0.request.payload).jsonText })
        bindings.append(jobs.map { JSONValue.object($0.request.info).jsonText })
        bindings.append(jobs.map(\.submittedBy))
        bindings.append(jobs.map { $0.request.path ?? "" })
        bindings.append(jobs.map { $0.request.startTimeoutSeconds ?? -1 })
        bindings.append(jobs.map { $0.request.webhookURL ?? "" })
        bindings.append(jobs.map { $0.request.webhookURL == nil ? "" : $0.request.webhookFormat.rawValue })
        bindings.append(jobs.map(\.tenant))
        bindings.append(jobs.map(\.weight))
        bindings.append(jobs.map { $0.request.maxRunSeconds ?? -1 })
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row {}
}

/// A job by request id, model and (optionally) tenant: the read under every status answer.
struct FindJobStatement: PostgresPreparedStatement {
    static let name = "spool_find_job_v1"
    static let sql = """
        SELECT id, request_id, model, status, priority, payload::text, info::text, outputs::text, error, retries,
               created_at, claimed_at, done_at, attempt, stop_reason, path, error_type, webhook_url, tenant, fair_tag
        FROM jobs WHERE request_id = $1 AND model = $2 AND ($3::text IS NULL OR tenant = $3)
        """
    typealias Row = (
        Int64, UUID, String, String, Int32, String, String, String?, String?, Int32, Date, Date?, Date?, Int32, String?, String?,
        String?, String?, String, Double
    )

    var requestID: UUID
    var model: String
    var tenant: String?

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 3)
        bindings.append(requestID)
        bindings.append(model)
        bindings.append(tenant)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
