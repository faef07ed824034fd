import Synchronization

/// A flag one task waits on and others raise: "something changed, look again".
///
/// A raise with nobody waiting is kept, so the next wait returns at once and nothing is missed.
package final class Signal: Sendable {
    private struct State {
        var raised = false
        var continuation: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    package init() {}

    package func raise() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            // A waiter consumes the raise; with none waiting it is kept for the next wait.
            guard let continuation = state.continuation else {
                state.raised = true
                return nil
            }
            state.continuation = nil
            return continuation
        }
        continuation?.resume()
    }

    /// Returns when raised (clearing the flag), when `timeout` passes, or when the task is cancelled.
    package func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.suspend() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { self.release() }
            }
            await group.next()
            group.cancelAll()
        }
    }

    /// Wakes the waiter without marking a change: its timeout or cancellation.
    private func release() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            defer { state.continuation = nil }
            return state.continuation
        }
        continuation?.resume()
    }

    private func suspend() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Checked under the lock: a cancellation that came before this point finds no
                // continuation to resume, so the wait must not start.
                let resumeNow = state.withLock { state -> Bool in
                    if state.raised {
                        state.raised = false
                        return true
                    }
                    if Task.isCancelled { return true }
                    state.continuation = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            release()
        }
    }
}
