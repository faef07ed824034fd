import Crypto
import Foundation
import Logging
import PostgresNIO
import SpoolCore

/// An API key a caller presented and the broker knows.
package struct APIKeyIdentity: Sendable, Equatable {
    /// A stable id safe to log and to store beside jobs; never the key itself.
    package var id: String
    package var name: String
    package var scopes: [String]
    package var tenant: String?
    /// Model patterns a worker key serves; nil: every model.
    package var models: [String]?
    package var expiresAt: Date?
}

/// API keys: only SHA-256 hashes are kept, in memory or in the `api_keys` table.
package enum APIKeyHash {
    /// Lowercase hex SHA-256 of a key.
    package static func of(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).lowercaseHex
    }

    /// A new random key: `spool_` and 32 random bytes in hex.
    package static func generateKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return "spool_" + (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }.lowercaseHex
    }
}

/// The `api_keys` table: keys created with `spool-broker keys create` or `POST /v1/admin/keys`.
/// Creating and revoking write their audit event in the same statement.
package struct APIKeysTable: Sendable {
    package init() {}

    /// The channel a trigger notifies whenever a key is created or revoked.
    package static let channel = "spool_keys"

    /// Stores a new key's hash; answers the stored key (without the key itself).
    package func create(
        _ request: CreateKeyRequest, key: String, createdBy: String, on database: some PostgresQueryable, logger: Logger
    ) async throws -> KeyView {
        let id = "key_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        let scopes = request.scopes.sorted().map(\.rawValue)
        let details = JSONValue.object([
            "name": .string(request.name), "scopes": .array(scopes.map(JSONValue.string)),
            "tenant": request.tenant.map(JSONValue.string) ?? .null, "models": request.models.map { .array($0.map(JSONValue.string)) } ?? .null,
            "expires_at": request.expiresAt.map { .string(RFC3339.string(from: $0)) } ?? .null,
        ]).jsonText
        let rows = try await database.run(
            """
            WITH created AS (
                INSERT INTO api_keys (id, key_hash, name, scopes, tenant, models, expires_at, created_by)
                VALUES (\(String(id)), \(APIKeyHash.of(key)), \(request.name), \(scopes), \(request.tenant), \(request.models),
                        \(request.expiresAt), \(createdBy))
                RETURNING id, created_at
            ), audited AS (
                INSERT INTO audit_events (actor, action, target, details)
                SELECT \(createdBy), 'key.created', id, \(details)::jsonb FROM created
            )
            SELECT created_at FROM created
            """, logger: logger)
        let createdAt = try await rows.collect().first?.decode(Date.self) ?? Date()
        return KeyView(
            id: String(id), name: request.name, scopes: scopes, tenant: request.tenant, models: request.models, createdAt: createdAt,
            expiresAt: request.expiresAt, createdBy: createdBy)
    }

    /// The live (not revoked, not expired) key with this hash, if any.
    package func find(keyHash: String, on database: some PostgresQueryable, logger: Logger) async throws -> APIKeyIdentity? {
        let rows = try await database.run(
            """
            SELECT id, name, scopes, tenant, models, expires_at FROM api_keys
            WHERE key_hash = \(keyHash) AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
            """, logger: logger)
        for try await (id, name, scopes, tenant, models, expiresAt) in rows.decode((String, String, [String], String?, [String]?, Date?).self) {
            return APIKeyIdentity(id: id, name: name, scopes: scopes, tenant: tenant, models: models, expiresAt: expiresAt)
        }
        return nil
    }

    /// Revokes a key by id; returns whether one was live.
    package func revoke(id: String, by actor: String, on database: some PostgresQueryable, logger: Logger) async throws -> Bool {
        let rows = try await database.run(
            """
            WITH revoked AS (
                UPDATE api_keys SET revoked_at = now() WHERE id = \(id) AND revoked_at IS NULL RETURNING id, name
            ), audited AS (
                INSERT INTO audit_events (actor, action, target, details)
                SELECT \(actor), 'key.revoked', id, jsonb_build_object('name', name) FROM revoked
            )
            SELECT id FROM revoked
            """, logger: logger)
        return try await !rows.collect().isEmpty
    }

    /// Live keys (expired ones included, marked by `expires_at`), newest first, without their hashes.
    package func list(on database: some PostgresQueryable, logger: Logger) async throws -> [KeyView] {
        let rows = try await database.run(
            """
            SELECT id, name, scopes, tenant, models, created_at, expires_at, created_by FROM api_keys
            WHERE revoked_at IS NULL ORDER BY created_at DESC, id LIMIT 10000
            """, logger: logger)
        var keys: [KeyView] = []
        for try await (id, name, scopes, tenant, models, createdAt, expiresAt, createdBy) in rows.decode(
            (String, String, [String], String?, [String]?, Date, Date?, String?).self)
        {
            keys.append(
                KeyView(
                    id: id, name: name, scopes: scopes, tenant: tenant, models: models, createdAt: createdAt, expiresAt: expiresAt,
                    createdBy: createdBy))
        }
        return keys
    }

    /// How many live keys the table holds.
    package func countLive(on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        try await database.run("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL", logger: logger)
            .collect().first?.decode(Int.self) ?? 0
    }
}

/// The `audit_events` table: what admin keys did. Actions write their event themselves, in their
/// own statement (keys here, queue clears in JobsTable); this reads them.
package struct AuditEventsTable: Sendable {
    package init() {}

    /// Events newest first, older than `beforeID` when given.
    package func list(limit: Int, beforeID: Int64?, on database: some PostgresQueryable, logger: Logger) async throws -> [AuditEvent] {
        let rows = try await database.run(
            """
            SELECT id, at, actor, action, target, details::text FROM audit_events
            WHERE \(beforeID)::bigint IS NULL OR id < \(beforeID)
            ORDER BY id DESC LIMIT \(limit)
            """, logger: logger)
        var events: [AuditEvent] = []
        for try await (id, at, actor, action, target, details) in rows.decode((Int64, Date, String, String, String?, String).self) {
            events.append(
                AuditEvent(id: id, at: at, actor: actor, action: action, target: target, details: (try? JSONValue.parse(details))?.objectValue ?? [:])
            )
        }
        return events
    }
}
