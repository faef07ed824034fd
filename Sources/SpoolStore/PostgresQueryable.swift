import Logging
import PostgresNIO

/// Something that runs a query: the pool or one connection inside a transaction.
///
/// Each table's queries are written once against this, and used from either.
public protocol PostgresQueryable: Sendable {
    @discardableResult
    func query(_ query: PostgresQuery, logger: Logger, file: String, line: Int) async throws -> PostgresRowSequence

    /// Runs a named statement, prepared once per connection: the hot statements skip parsing and planning.
    func runPrepared<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger, file: String, line: Int)
        async throws -> AsyncThrowingMapSequence<PostgresRowSequence, Statement.Row>
}

extension PostgresClient: PostgresQueryable {
    public func query(_ query: PostgresQuery, logger: Logger, file: String, line: Int) async throws -> PostgresRowSequence {
        try await self.query(query, logger: Optional(logger), file: file, line: line)
    }

    public func runPrepared<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger, file: String, line: Int)
        async throws -> AsyncThrowingMapSequence<PostgresRowSequence, Statement.Row>
    {
        try await execute(statement, logger: logger, file: file, line: line)
    }
}

extension PostgresConnection: PostgresQueryable {
    public func runPrepared<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger, file: String, line: Int)
        async throws -> AsyncThrowingMapSequence<PostgresRowSequence, Statement.Row>
    {
        try await execute(statement, logger: logger, file: file, line: line)
    }
}

extension PostgresQueryable {
    @discardableResult
    func run(_ query: PostgresQuery, logger: Logger, file: String = #fileID, line: Int = #line) async throws -> PostgresRowSequence {
        try await self.query(query, logger: logger, file: file, line: line)
    }

    func run<Statement: PostgresPreparedStatement>(_ statement: Statement, logger: Logger, file: String = #fileID, line: Int = #line)
        async throws -> AsyncThrowingMapSequence<PostgresRowSequence, Statement.Row>
    {
        try await runPrepared(statement, logger: logger, file: file, line: line)
    }
}
