import Logging
import PostgresNIO

/// Something that runs a query: the pool or one connection inside a transaction.
///
/// Each table's queries are written once against this, and used from either.
public protocol PostgresQueryable: Sendable {
    @discardableResult
    func query(_ query: PostgresQuery, logger: Logger, file: String, line: Int) async throws -> PostgresRowSequence
}

extension PostgresClient: PostgresQueryable {
    public func query(_ query: PostgresQuery, logger: Logger, file: String, line: Int) async throws -> PostgresRowSequence {
        try await self.query(query, logger: Optional(logger), file: file, line: line)
    }
}

extension PostgresConnection: PostgresQueryable {}

extension PostgresQueryable {
    @discardableResult
    func run(_ query: PostgresQuery, logger: Logger, file: String = #fileID, line: Int = #line) async throws -> PostgresRowSequence {
        try await self.query(query, logger: logger, file: file, line: line)
    }
}
