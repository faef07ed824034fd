import Logging
import PostgresNIO
import Synchronization

/// Something that runs a query: the pool or one connection inside a transaction.
///
/// Each table's queries are written once against this, and used from either. Every query reads
/// its rows in full before its connection goes back to the pool, and none can wait forever on a
/// connection that closed under it (``PostgresConnection/guarded(_:)``).
package protocol PostgresQueryable: Sendable {
    /// Runs a query and reads its rows.
    func rows(_ query: PostgresQuery, logger: Logger, file: String, line: Int) async throws -> Rows<PostgresRow>

    /// Runs a named statement, prepared once per connection: the hot statements skip parsing and planning.
    func preparedRows<Statement: PostgresPreparedStatement>(
        _ statement: Statement, logger: Logger, file: String, line: Int
    )
        async throws -> Rows<Statement.Row> where Statement.Row: Sendable
}

/// Whether the hot statements are prepared once per connection (named) or sent unnamed each time.
///
/// A pooler in transaction mode that does not track prepared statements (PgBouncer before 1.21,
/// many managed poolers) hands a connection's named statements to other clients' transactions;
/// unnamed ones pass through any pooler, for a parse and a plan per statement.
package enum PreparedStatements {
    private static let unnamed = Atomic<Bool>(false)

    package static var areUnnamed: Bool { unnamed.load(ordering: .relaxed) }

    /// Set once at start-up, before the first statement (`--unnamed-statements`).
    package static func sendUnnamed(_ value: Bool) { unnamed.store(value, ordering: .relaxed) }
}

/// Rows read in full: iterated, collected, or decoded (`rows.decode((Int, String).self)`) as
/// PostgresNIO's row sequence is.
package struct Rows<Element: Sendable>: AsyncSequence, Sendable {
    package let elements: [Element]

    package init(_ elements: [Element]) { self.elements = elements }

    package struct AsyncIterator: AsyncIteratorProtocol {
        var base: IndexingIterator<[Element]>
        package mutating func next() async -> Element? { base.next() }
    }

    package func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: elements.makeIterator()) }

    package func collect() async throws -> [Element] { elements }
}

extension PostgresConnection: PostgresQueryable {
    package func rows(_ query: PostgresQuery, logger: Logger, file: String, line: Int) async throws -> Rows<PostgresRow> {
        try await guarded { Rows(try await self.query(query, logger: logger, file: file, line: line).collect()) }
    }

    package func preparedRows<Statement: PostgresPreparedStatement>(
        _ statement: Statement, logger: Logger, file: String, line: Int
    )
        async throws -> Rows<Statement.Row> where Statement.Row: Sendable
    {
        if PreparedStatements.areUnnamed {
            let query = PostgresQuery(unsafeSQL: Statement.sql, binds: try statement.makeBindings())
            return try await guarded {
                Rows(try await self.query(query, logger: logger, file: file, line: line).collect().map { try statement.decodeRow($0) })
            }
        }
        return try await guarded {
            var rows: [Statement.Row] = []
            for try await row in try await self.execute(statement, logger: logger, file: file, line: line) { rows.append(row) }
            return Rows(rows)
        }
    }

    /// Runs `operation`, one exchange on this connection, unless the connection closes under it.
    ///
    /// PostgresNIO 1.33 writes a query to its channel without a write promise: a query written to
    /// a connection that closed after it was leased (the server crashed) is dropped, and its answer
    /// never comes. Brokers then held requests forever after a PostgreSQL crash and never finished
    /// a graceful shutdown. Here the answer is awaited apart, and once the connection is closed and
    /// a second has passed without it, the wait ends with an error (the dropped query's task is left
    /// to wait alone; it holds no connection).
    func guarded<Result: Sendable>(_ operation: @escaping @Sendable () async throws -> Result) async throws -> Result {
        guard !isClosed else { throw DatabaseConnectionLost() }
        return try await withCheckedThrowingContinuation { continuation in
            let outcome = GuardedOutcome(continuation)
            outcome.watch(
                Task {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .milliseconds(500))
                        guard self.isClosed, !Task.isCancelled else { continue }
                        try? await Task.sleep(for: .seconds(1))
                        outcome.finish(.failure(DatabaseConnectionLost()))
                        return
                    }
                })
            Task {
                do {
                    outcome.finish(.success(try await operation()))
                } catch {
                    outcome.finish(.failure(error))
                }
            }
        }
    }
}

/// A statement whose connection closed before its answer came: PostgreSQL crashed, restarted or
/// failed over. Retrying on a new connection is safe for reads; a write's fate is unknown to the
/// broker, which is why writes are idempotent or fenced.
package struct DatabaseConnectionLost: Error, CustomStringConvertible {
    package var description: String { "The database connection closed before the statement's answer came." }
}

/// The first of an operation's answer and its watchdog's verdict; the other is dropped.
private final class GuardedOutcome<Value: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Value, any Error>?
        var watchdog: Task<Void, Never>?
    }

    private let state: Mutex<State>

    init(_ continuation: CheckedContinuation<Value, any Error>) {
        state = Mutex(State(continuation: continuation))
    }

    func watch(_ watchdog: Task<Void, Never>) {
        let finished = state.withLock { state -> Bool in
            guard state.continuation != nil else { return true }
            state.watchdog = watchdog
            return false
        }
        if finished { watchdog.cancel() }
    }

    func finish(_ result: Result<Value, any Error>) {
        let (continuation, watchdog) = state.withLock { state in
            defer { state = State() }
            return (state.continuation, state.watchdog)
        }
        watchdog?.cancel()
        continuation?.resume(with: result)
    }
}

extension PostgresClient: PostgresQueryable {
    package func rows(_ query: PostgresQuery, logger: Logger, file: String, line: Int) async throws -> Rows<PostgresRow> {
        try await withConnection { connection in try await connection.rows(query, logger: logger, file: file, line: line) }
    }

    package func preparedRows<Statement: PostgresPreparedStatement>(
        _ statement: Statement, logger: Logger, file: String, line: Int
    )
        async throws -> Rows<Statement.Row> where Statement.Row: Sendable
    {
        try await withConnection { connection in try await connection.preparedRows(statement, logger: logger, file: file, line: line) }
    }

    /// Runs `body` in one transaction on a pooled connection (``PostgresConnection/transaction(logger:_:)``).
    package func transaction<Result: Sendable>(
        logger: Logger, isolation: isolated (any Actor)? = #isolation, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await withConnection(isolation: isolation) { connection in
            try await connection.transaction(logger: logger, isolation: isolation, body)
        }
    }
}

extension PostgresConnection {
    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws (its
    /// error is rethrown as it is). Every statement, the BEGIN and COMMIT included, is guarded
    /// against a connection that closes under it.
    package func transaction<Result: Sendable>(
        logger: Logger, isolation: isolated (any Actor)? = #isolation, _ body: (PostgresConnection) async throws -> Result
    ) async throws -> Result {
        try await run("BEGIN", logger: logger)
        let result: Result
        do {
            result = try await body(self)
        } catch {
            _ = try? await run("ROLLBACK", logger: logger)
            throw error
        }
        try await run("COMMIT", logger: logger)
        return result
    }
}

extension PostgresQueryable {
    @discardableResult
    func run(_ query: PostgresQuery, logger: Logger, file: String = #fileID, line: Int = #line) async throws -> Rows<PostgresRow> {
        try await rows(query, logger: logger, file: file, line: line)
    }

    func run<Statement: PostgresPreparedStatement>(
        _ statement: Statement, logger: Logger, file: String = #fileID, line: Int = #line
    )
        async throws -> Rows<Statement.Row> where Statement.Row: Sendable
    {
        try await preparedRows(statement, logger: logger, file: file, line: line)
    }
}

extension PostgresQueryable {
    /// A round trip that reads nothing, labelled so operators can tell it in pg_stat_activity.
    package func healthCheck(_ label: HealthCheck, logger: Logger) async throws {
        switch label {
        case .readiness: try await run("SELECT 'spool readiness'", logger: logger)
        case .listener: try await run("SELECT 'spool listener health'", logger: logger)
        }
    }
}

/// Who asks the database whether it answers.
package enum HealthCheck: Sendable {
    /// `/readyz`.
    case readiness
    /// The LISTEN connection, checking that it is alive.
    case listener
}
