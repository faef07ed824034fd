import Logging
import PostgresNIO

/// A table of records each tenant reads by id or lists newest first (files, batches): one query for each.
package protocol TenantRecordsTable: Sendable {
    associatedtype Record
    associatedtype ID: PostgresDynamicTypeEncodable
    static var tableName: String { get }
    /// The columns `record(_:)` decodes, in its order.
    static var columns: String { get }
    static func record(_ row: PostgresRow) throws -> Record
}

extension TenantRecordsTable {
    /// The record, if it is `tenant`'s (nil: any tenant's); another tenant's reads as none.
    package func find(id: ID, tenant: String?, on database: some PostgresQueryable, logger: Logger) async throws -> Record? {
        let rows = try await database.run(
            """
            SELECT \(unescaped: Self.columns) FROM \(unescaped: Self.tableName)
            WHERE id = \(id) AND (\(tenant)::text IS NULL OR tenant = \(tenant))
            """, logger: logger)
        return try rows.elements.first.map(Self.record)
    }

    /// `tenant`'s records (nil: every tenant's), newest first.
    package func list(limit: Int, tenant: String?, on database: some PostgresQueryable, logger: Logger) async throws -> [Record] {
        let rows = try await database.run(
            """
            SELECT \(unescaped: Self.columns) FROM \(unescaped: Self.tableName) WHERE (\(tenant)::text IS NULL OR tenant = \(tenant))
            ORDER BY created_at DESC, id LIMIT \(limit)
            """, logger: logger)
        return try rows.elements.map(Self.record)
    }
}
