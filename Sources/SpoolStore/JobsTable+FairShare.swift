import Logging
import PostgresNIO

// Fair share within a priority: start-time fair queuing over tenants. Each tenant has a last tag
// per model and priority (fair_share_tags); a submit of n jobs moves it on by n/weight, starting
// from the queue's virtual time when the tenant was idle (the smallest pending tag, or the largest
// tag given out once nothing waits). The claim takes the smallest tag first, so a tenant that
// arrives behind another's backlog of 100,000 is served alternately with it, not after it.
extension JobsTable {
    /// A CTE named `tags`, from a CTE named `item` (model, priority, tenant, weight, arrival): each
    /// (model, priority, tenant) of the statement with the tag its first job goes after (`base`).
    /// The upsert locks the tenant's row, so two submits at once take consecutive tags.
    static let fairTagsSQL = """
        tags AS (
            INSERT INTO fair_share_tags AS existing (model, priority, tenant, last_tag, last_step)
            SELECT wanted.model, wanted.priority, wanted.tenant, clock.virtual_time + wanted.step, wanted.step
            FROM (SELECT model, priority, tenant, count(*) / max(weight) AS step FROM item GROUP BY model, priority, tenant) AS wanted
            CROSS JOIN LATERAL (
                SELECT coalesce(
                    (SELECT fair_tag FROM jobs
                     WHERE status = 'pending' AND model = wanted.model AND priority = wanted.priority
                     ORDER BY fair_tag, id LIMIT 1),
                    (SELECT max(last_tag) FROM fair_share_tags WHERE model = wanted.model AND priority = wanted.priority),
                    0) AS virtual_time
            ) AS clock
            -- One order for every statement's row locks: two submits of several tenants cannot deadlock.
            ORDER BY wanted.model, wanted.priority, wanted.tenant
            ON CONFLICT (model, priority, tenant) DO UPDATE
                SET last_tag = greatest(existing.last_tag + EXCLUDED.last_step, EXCLUDED.last_tag), last_step = EXCLUDED.last_step
            RETURNING model, priority, tenant, last_tag - last_step AS base
        )
        """

    /// The fair tag of each `item` row joined with `tags`: one more job over the weight, in arrival order.
    static let fairTagSQL = """
        tags.base + (row_number() OVER (PARTITION BY item.model, item.priority, item.tenant ORDER BY item.arrival)) / item.weight
        """
}

extension JobsTable {
    /// The tenant's pending jobs over every model, counted up to `limit` (so a deep backlog costs
    /// no more than the quota it is checked against).
    package func pendingCount(tenant: String, upTo limit: Int, on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        try await database.run(
            "SELECT count(*) FROM (SELECT 1 FROM jobs WHERE tenant = \(tenant) AND status = 'pending' LIMIT \(limit)) AS waiting",
            logger: logger
        ).collect().first?.decode(Int.self) ?? 0
    }
}
