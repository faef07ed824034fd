import Foundation

/// Polls `condition` until it holds or `timeout` passes: tests wait on conditions, never on fixed sleeps.
/// The timeout is generous because CI runs the whole suite on two cores; a pass is quick.
func eventually(
    _ what: String, timeout: Duration = .seconds(60), every interval: Duration = .milliseconds(50),
    _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: interval)
    }
    throw TestFailure("timed out after \(timeout) waiting until \(what)")
}
