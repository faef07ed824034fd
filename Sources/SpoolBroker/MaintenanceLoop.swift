import Logging

/// The loop of a broker's background service: a pass, then a wait, until the broker stops. A
/// failing pass is logged when it starts failing and when it recovers, not on every retry.
struct MaintenanceLoop {
    /// What the passes do, for the log: "lease maintenance".
    let name: String
    let logger: Logger

    func run(pass: () async throws -> Void, wait: () async throws -> Void) async {
        var failing = false
        while !Task.isCancelled {
            do {
                try await pass()
                if failing { logger.notice("\(name) recovered") }
                failing = false
            } catch {
                if Task.isCancelled { return }
                if !failing { logger.error("\(name) failed; retrying", metadata: ["error": "\(String(reflecting: error))"]) }
                failing = true
            }
            // Cancelled while waiting: the broker is stopping.
            do { try await wait() } catch { return }
        }
    }
}
