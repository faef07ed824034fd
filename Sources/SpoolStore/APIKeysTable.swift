import Crypto
import Foundation
import Logging
import PostgresNIO

/// An API key a caller presented and the broker knows.
public struct APIKeyIdentity: Sendable, Equatable {
    /// A stable id safe to log and to store beside jobs; never the key itself.
    public var id: String
    public var name: String
    public var scopes: [String]
}

/// API keys: only SHA-256 hashes are kept, in memory or in the `api_keys` table.
public enum APIKeyHash {
    /// Lowercase hex SHA-256 of a key.
    public static func of(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// A new random key: `spool_` and 32 random bytes in hex.
    public static func generateKey() -> String {
        var generator = SystemRandomNumberGenerator()
        return "spool_" + (0..<32).map { _ in String(format: "%02x", UInt8.random(in: .min ... .max, using: &generator)) }.joined()
    }
}

/// The `api_keys` table: keys created with `spool-broker keys create`.
public struct APIKeysTable: Sendable {
    public init() {}

    /// The channel a trigger notifies whenever a key is created or revoked.
    public static let channel = "spool_keys"

    /// Stores a new key's hash and returns its id.
    public func create(name: String, key: String, on database: some PostgresQueryable, logger: Logger) async throws -> String {
        let id = "key_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "").prefix(16)
        try await database.run(
            "INSERT INTO api_keys (id, key_hash, name) VALUES (\(id), \(APIKeyHash.of(key)), \(name))", logger: logger)
        return id
    }

    /// The live key with this hash, if any.
    public func find(keyHash: String, on database: some PostgresQueryable, logger: Logger) async throws -> APIKeyIdentity? {
        let rows = try await database.run(
            "SELECT id, name, scopes FROM api_keys WHERE key_hash = \(keyHash) AND revoked_at IS NULL", logger: logger)
        for try await (id, name, scopes) in rows.decode((String, String, [String]).self) {
            return APIKeyIdentity(id: id, name: name, scopes: scopes)
        }
        return nil
    }

    /// Revokes a key by id; returns whether one was live.
    public func revoke(id: String, on database: some PostgresQueryable, logger: Logger) async throws -> Bool {
        let rows = try await database.run(
            "UPDATE api_keys SET revoked_at = now() WHERE id = \(id) AND revoked_at IS NULL RETURNING id", logger: logger)
        return try await !rows.collect().isEmpty
    }

    /// Live keys, newest first, without their hashes.
    public func list(on database: some PostgresQueryable, logger: Logger) async throws -> [(id: String, name: String, createdAt: Date)] {
        let rows = try await database.run(
            "SELECT id, name, created_at FROM api_keys WHERE revoked_at IS NULL ORDER BY created_at DESC", logger: logger)
        var keys: [(id: String, name: String, createdAt: Date)] = []
        for try await (id, name, createdAt) in rows.decode((String, String, Date).self) {
            keys.append((id, name, createdAt))
        }
        return keys
    }

    /// How many live keys the table holds.
    public func countLive(on database: some PostgresQueryable, logger: Logger) async throws -> Int {
        try await database.run("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL", logger: logger)
            .collect().first?.decode(Int.self) ?? 0
    }
}
