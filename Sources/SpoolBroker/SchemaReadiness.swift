import Synchronization

/// Whether this broker's migrations have been applied: background services wait for it, and
/// readiness probes report it.
final class SchemaReadiness: Sendable {
    private let ready = Atomic(false)

    var isReady: Bool { ready.load(ordering: .acquiring) }

    func markReady() { ready.store(true, ordering: .releasing) }

    /// Returns once the schema is ready; throws if cancelled first.
    func wait() async throws {
        while !isReady { try await Task.sleep(for: .milliseconds(20)) }
    }
}
