import Foundation
import Logging
import PostgresNIO

/// What an idempotency key says about a submit.
package enum IdempotencyClaim: Sendable, Equatable {
    /// The key is new (or its earlier use has expired): the submit goes ahead with this request id.
    case claimed
    /// The key was used within the window for the same request: answer with that job.
    case replay(requestID: UUID)
    /// The key was used within the window for a different request.
    case reusedWithDifferentRequest
}

/// The `idempotency_keys` table: retried submits find their first job here.
package struct IdempotencyKeysTable: Sendable {
    package init() {}

    /// Records `key` for `requestID`, unless the key is already in use within `windowSeconds`.
    ///
    /// Run inside the submit's transaction: a concurrent submit with the same key waits on the
    /// row lock until this transaction ends, then sees its outcome.
    package func claim(
        owner: String, key: String, requestHash: String, requestID: UUID, windowSeconds: Int,
        on connection: PostgresConnection, logger: Logger
    ) async throws -> IdempotencyClaim {
        let claims = try await claimMany(
            owner: owner, keys: [(key, requestHash, requestID)], windowSeconds: windowSeconds, on: connection, logger: logger)
        return claims[0]
    }

    /// Records many keys at once (a bulk submit's), each for its own request id: one claim per
    /// key, in the order given. Run inside the submit's transaction. Keys are taken in sorted
    /// order, so two bulk submits sharing keys wait on each other instead of deadlocking.
    package func claimMany(
        owner: String, keys: [(key: String, requestHash: String, requestID: UUID)], windowSeconds: Int,
        on connection: PostgresConnection, logger: Logger
    ) async throws -> [IdempotencyClaim] {
        guard !keys.isEmpty else { return [] }
        let inserted = try await connection.run(
            """
            INSERT INTO idempotency_keys (owner, key, request_hash, request_id)
            SELECT \(owner), wanted.key, wanted.request_hash, wanted.request_id
            FROM unnest(\(keys.map(\.key))::text[], \(keys.map(\.requestHash))::text[], \(keys.map(\.requestID))::uuid[])
                 AS wanted(key, request_hash, request_id)
            ORDER BY wanted.key
            ON CONFLICT (owner, key) DO UPDATE
                SET request_hash = EXCLUDED.request_hash, request_id = EXCLUDED.request_id, created_at = now()
                WHERE idempotency_keys.created_at <= now() - make_interval(secs => \(windowSeconds))
            RETURNING key
            """, logger: logger)
        var claimed = Set<String>()
        for try await key in inserted.decode(String.self) { claimed.insert(key) }
        let taken = keys.map(\.key).filter { !claimed.contains($0) }
        var existing: [String: (hash: String, requestID: UUID)] = [:]
        if !taken.isEmpty {
            let rows = try await connection.run(
                "SELECT key, request_hash, request_id FROM idempotency_keys WHERE owner = \(owner) AND key = ANY(\(taken)::text[])",
                logger: logger)
            for try await (key, hash, requestID) in rows.decode((String, String, UUID).self) { existing[key] = (hash, requestID) }
        }
        return try keys.map { wanted in
            if claimed.contains(wanted.key) { return .claimed }
            // Unreachable in practice: the conflicting row existed a statement ago and only pruning deletes.
            guard let first = existing[wanted.key] else {
                throw SpoolStoreError(description: "The idempotency key '\(wanted.key)' vanished during a submit.")
            }
            return first.hash == wanted.requestHash ? .replay(requestID: first.requestID) : .reusedWithDifferentRequest
        }
    }

    /// Deletes keys older than the window; returns how many.
    package func prune(windowSeconds: Int, now: Date? = nil, on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        let rows = try await database.run(
            """
            WITH pruned AS (
                DELETE FROM idempotency_keys WHERE created_at < \(secondsAgo: Double(windowSeconds), clock: now) RETURNING 1
            )
            SELECT count(*) FROM pruned
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }
}
