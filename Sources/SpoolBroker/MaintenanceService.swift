import Logging
import ServiceLifecycle

/// A broker's background service. The service lifecycle names it in logs by its type, not by its
/// fields: the configuration it holds has keys in it.
protocol BrokerService: Service, CustomStringConvertible {}

extension BrokerService {
    var description: String { "\(Self.self)" }
}

/// A background service that works in passes: once the schema is ready, a pass, then a wait, until
/// the broker stops. A failing pass is logged when it starts failing and when it recovers, not on
/// every retry.
protocol MaintenanceService: BrokerService {
    var schema: SchemaReadiness { get }
    var logger: Logger { get }
    /// What the passes do, for the log: "lease maintenance".
    static var passName: String { get }
    func pass() async throws
    /// Waits until the next pass is due (or it is woken); throws when the broker stops meanwhile.
    func waitForNextPass() async throws
}

extension MaintenanceService {
    func run() async throws {
        await cancelWhenGracefulShutdown {
            guard (try? await schema.wait()) != nil else { return }
            var failing = false
            while !Task.isCancelled {
                do {
                    try await pass()
                    if failing { logger.notice("\(Self.passName) recovered") }
                    failing = false
                } catch {
                    if Task.isCancelled { return }
                    if !failing { logger.error("\(Self.passName) failed; retrying", metadata: ["error": "\(String(reflecting: error))"]) }
                    failing = true
                }
                // Cancelled while waiting: the broker is stopping.
                do { try await waitForNextPass() } catch { return }
            }
        }
    }
}
