import Synchronization

/// Runs `body` in a task of its own and returns its result, or nil once `limit` has passed.
///
/// For work that cannot be cancelled (a statement on a connection whose server is frozen): the
/// caller stops waiting at the limit and the work is left to finish, or not, on its own. Work
/// that honours cancellation belongs in a task group instead.
package func result<Value: Sendable>(
    within limit: Duration, of body: @escaping @Sendable () async throws -> Value
) async throws -> Value? {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value?, any Error>) in
        let pending = Mutex<CheckedContinuation<Value?, any Error>?>(continuation)
        let finish = { @Sendable (result: Result<Value?, any Error>) in
            pending.withLock { pending in
                defer { pending = nil }
                return pending
            }?.resume(with: result)
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            finish(.success(nil))
        }
        Task {
            do {
                finish(.success(try await body()))
            } catch {
                finish(.failure(error))
            }
            timer.cancel()
        }
    }
}
