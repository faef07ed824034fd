import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// What a lease waiting on a broker takes a handed-over job on: the same terms its claim would use.
package struct HandoverLease: Sendable, Equatable {
    /// Every model the lease serves: a job of any of them waiting goes first.
    package var models: [String]
    package var workerID: String
    package var leaseSeconds: Double
    package var maxRunSeconds: Double

    package init(models: [String], workerID: String, leaseSeconds: Double, maxRunSeconds: Double) {
        self.models = models
        self.workerID = workerID
        self.leaseSeconds = leaseSeconds
        self.maxRunSeconds = maxRunSeconds
    }
}

extension JobsTable {
    /// Inserts a submitted job already claimed by `lease` when none of the lease's models has a job
    /// waiting (so it is the job that lease's claim would take), and answers it; otherwise inserts it
    /// pending and announces it like any submit, and answers nil. One statement, one transaction.
    package func insertHandedOver(
        _ job: NewJob, to lease: HandoverLease, on database: some PostgresQueryable, logger: Logger
    ) async throws -> ClaimedJob? {
        let statement = InsertHandedOverStatement(job: job, lease: lease, running: JobsTable.claim.to.rawValue)
        for try await row in try await database.run(statement, logger: logger) {
            guard let leaseToken = row.4, let leaseExpiresAt = row.9, let runDeadlineAt = row.10 else { return nil }
            return ClaimedJob(
                id: row.0, requestID: row.1, model: row.2, priority: row.3, leaseToken: leaseToken, attempt: row.5,
                payload: try Self.object(row.6), info: try Self.object(row.7), leaseExpiresAt: leaseExpiresAt,
                runDeadlineAt: runDeadlineAt, path: row.8, queueWaitSeconds: 0)
        }
        throw SpoolStoreError(description: "The handover insert answered no row.")
    }
}

/// The insert of one submitted job for a waiting lease, prepared once per connection. Its columns
/// are those of `InsertJobsStatement` (same conventions), and its lease those of the claim.
struct InsertHandedOverStatement: PostgresPreparedStatement {
    static let name = "spool_insert_handed_over_v1"
    static let sql = """
        WITH item AS (
            SELECT $1::uuid AS request_id, $2::text AS model, $3::int4 AS priority, $4::text AS payload, $5::text AS info,
                   $6::text AS submitted_by, $7::text AS path, $8::float8 AS start_timeout, $9::text AS webhook_url,
                   $10::text AS webhook_format, $11::text AS tenant, $12::float8 AS weight, $13::float8 AS max_run, 1 AS arrival
        ), \(JobsTable.fairTagsSQL),
        queue AS MATERIALIZED (
            -- Read before the insert: a job of the lease's models that waits is claimed before this one.
            SELECT NOT EXISTS (
                SELECT 1 FROM jobs WHERE status = \(JobsTable.claim.from.sql) AND model = ANY ($14::text[])
                  AND (start_deadline_at IS NULL OR start_deadline_at > now())
            ) AS idle
        ),
        inserted AS (
            INSERT INTO jobs (request_id, model, priority, payload, info, submitted_by, path, start_deadline_at,
                              webhook_url, webhook_format, tenant, fair_tag, max_run_seconds,
                              status, attempt, lease_token, lease_seconds, lease_expires_at, run_deadline_at, claimed_at, worker_id)
            SELECT item.request_id, item.model, item.priority, item.payload::jsonb, item.info::jsonb, item.submitted_by,
                   nullif(item.path, ''),
                   CASE WHEN item.start_timeout >= 0 THEN now() + make_interval(secs => item.start_timeout) END,
                   nullif(item.webhook_url, ''), nullif(item.webhook_format, ''), item.tenant, \(JobsTable.fairTagSQL),
                   CASE WHEN item.max_run > 0 THEN item.max_run END,
                   CASE WHEN queue.idle THEN $18::text ELSE \(JobsTable.claim.from.sql) END,
                   CASE WHEN queue.idle THEN 1 ELSE 0 END,
                   CASE WHEN queue.idle THEN gen_random_uuid() END,
                   CASE WHEN queue.idle THEN $15::float8 END,
                   CASE WHEN queue.idle THEN now() + make_interval(secs => $15::float8) END,
                   CASE WHEN queue.idle
                        THEN now() + make_interval(secs => least($16::float8, CASE WHEN item.max_run > 0 THEN item.max_run ELSE $16::float8 END))
                   END,
                   CASE WHEN queue.idle THEN now() END,
                   CASE WHEN queue.idle THEN $17::text END
            FROM item JOIN tags USING (model, priority, tenant) CROSS JOIN queue
            RETURNING id, request_id, model, priority, lease_token, attempt, payload::text, info::text, path, lease_expires_at,
                      run_deadline_at, status
        )
        SELECT inserted.id, inserted.request_id, inserted.model, inserted.priority, inserted.lease_token, inserted.attempt,
               inserted.payload, inserted.info, inserted.path, inserted.lease_expires_at, inserted.run_deadline_at
        FROM inserted
        LEFT JOIN LATERAL (
            SELECT pg_notify('\(JobsTable.pendingChannel)', inserted.model) WHERE inserted.status = \(JobsTable.claim.from.sql)
        ) AS woken ON true
        """
    typealias Row = (Int64, UUID, String, Int32, UUID?, Int32, String, String, String?, Date?, Date?)

    var job: NewJob
    var lease: HandoverLease
    /// The status a claim moves a job to, as the state machine says.
    var running: String

    func makeBindings() throws -> PostgresBindings {
        var bindings = PostgresBindings(capacity: 18)
        bindings.append(job.requestID)
        bindings.append(job.request.model)
        bindings.append(job.request.priority)
        bindings.append(JSONValue.object(job.request.payload).jsonText)
        bindings.append(JSONValue.object(job.request.info).jsonText)
        bindings.append(job.submittedBy)
        bindings.append(job.request.path ?? "")
        bindings.append(job.request.startTimeoutSeconds ?? -1)
        bindings.append(job.request.webhookURL ?? "")
        bindings.append(job.request.webhookURL == nil ? "" : job.request.webhookFormat.rawValue)
        bindings.append(job.tenant)
        bindings.append(job.weight)
        bindings.append(job.request.maxRunSeconds ?? -1)
        bindings.append(lease.models)
        bindings.append(lease.leaseSeconds)
        bindings.append(lease.maxRunSeconds)
        bindings.append(lease.workerID)
        bindings.append(running)
        return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
