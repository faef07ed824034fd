import Logging
import PostgresNIO

/// The `rate_buckets` table: each tenant's submit token bucket, one row, shared by every replica.
package struct RateBucketsTable: Sendable {
    package init() {}

    /// Takes `count` tokens from the tenant's bucket (refilled at `rate` per second up to `burst`),
    /// or none when it holds fewer: then the seconds until enough are back. One statement: the row
    /// lock orders concurrent submits across replicas.
    package func take(
        tenant: String, rate: Double, burst: Int, count: Int = 1, on database: some PostgresQueryable, logger: Logger
    ) async throws -> (taken: Bool, retryAfterSeconds: Double) {
        let count = Double(count)
        let rows = try await database.run(
            """
            WITH taken AS (
                INSERT INTO rate_buckets AS bucket (tenant, tokens, refilled_at) VALUES (\(tenant), \(Double(burst)) - \(count), now())
                ON CONFLICT (tenant) DO UPDATE
                    SET tokens = least(\(Double(burst)), bucket.tokens + \(rate) * extract(epoch FROM now() - bucket.refilled_at)) - \(count),
                        refilled_at = now()
                    WHERE least(\(Double(burst)), bucket.tokens + \(rate) * extract(epoch FROM now() - bucket.refilled_at)) >= \(count)
                RETURNING true AS taken, 0::float8 AS wait
            )
            SELECT taken, wait FROM taken
            UNION ALL
            -- Read from the statement's snapshot: a submit racing on another replica can make this
            -- estimate short, never make a refused submit count as taken.
            SELECT false, greatest((\(count) - least(\(Double(burst)), tokens + \(rate) * extract(epoch FROM now() - refilled_at))) / \(rate), 0)
            FROM rate_buckets WHERE tenant = \(tenant) AND NOT EXISTS (SELECT 1 FROM taken)
            """, logger: logger)
        // No row: the bucket was created by a racing submit after this statement's snapshot, and
        // that submit took the token this one wanted.
        return try await rows.collect().first?.decode((Bool, Double).self) ?? (false, count / rate)
    }
}
