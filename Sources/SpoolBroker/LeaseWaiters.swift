import Synchronization

/// The lease requests waiting on this broker for jobs, and the wake-ups that reach them.
///
/// A NOTIFY for a model wakes the longest-waiting lease that serves it, one per notification: a
/// woken lease that claims a full batch wakes the next (there may be more), so a burst of
/// submits fans out without waking a thousand long-polls for one job.
final class LeaseWaiters: Sendable {
    private struct Waiter {
        let id: Int
        let models: Set<String>
        var woken = false
        var continuation: CheckedContinuation<Void, Never>?
    }

    private struct State {
        var nextID = 0
        /// Set at shutdown: every wait returns at once, so long-polls end and the server can stop.
        var closed = false
        /// In arrival order: the first waiter for a model is woken first.
        var waiters: [Waiter] = []
    }

    private let state = Mutex(State())

    /// A registered waiter; keep it across claim attempts so no wake-up between them is missed.
    struct Ticket: Sendable {
        fileprivate let id: Int
    }

    /// Registers a waiter before its first claim, so a job submitted during that claim still wakes it.
    func register(models: [String]) -> Ticket {
        state.withLock { state in
            state.nextID += 1
            state.waiters.append(Waiter(id: state.nextID, models: Set(models)))
            return Ticket(id: state.nextID)
        }
    }

    func unregister(_ ticket: Ticket) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == ticket.id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        continuation?.resume()
    }

    /// Waits until woken, `timeout` passes, or the task is cancelled; then clears the wake-up for the next round.
    func wait(_ ticket: Ticket, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.suspend(ticket) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { self.wake(ticket) }
            }
            await group.next()
            group.cancelAll()
        }
        state.withLock { state in
            if let index = state.waiters.firstIndex(where: { $0.id == ticket.id }) { state.waiters[index].woken = false }
        }
    }

    /// Ends every wait now and every later one at once: the broker is shutting down.
    func close() {
        let continuations = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.closed = true
            var woken: [CheckedContinuation<Void, Never>] = []
            for index in state.waiters.indices {
                state.waiters[index].woken = true
                if let continuation = state.waiters[index].continuation { woken.append(continuation) }
                state.waiters[index].continuation = nil
            }
            return woken
        }
        continuations.forEach { $0.resume() }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Wakes up to `count` waiters that serve `model`, longest-waiting first.
    func notify(model: String, count: Int = 1) {
        let continuations = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var woken: [CheckedContinuation<Void, Never>] = []
            var remaining = count
            for index in state.waiters.indices where remaining > 0 {
                guard !state.waiters[index].woken, state.waiters[index].models.contains(model) else { continue }
                state.waiters[index].woken = true
                remaining -= 1
                if let continuation = state.waiters[index].continuation {
                    state.waiters[index].continuation = nil
                    woken.append(continuation)
                }
            }
            return woken
        }
        continuations.forEach { $0.resume() }
    }

    /// The models some waiter serves: what the fallback poll asks the database about.
    var waitedForModels: [String] {
        state.withLock { state in Array(Set(state.waiters.flatMap(\.models))) }
    }

    /// Waiters registered now (for metrics and tests).
    var count: Int { state.withLock { $0.waiters.count } }

    /// Ends the ticket's current wait (its client hung up, say); the next wait is not affected.
    func wake(_ ticket: Ticket) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == ticket.id }) else { return nil }
            state.waiters[index].woken = true
            defer { state.waiters[index].continuation = nil }
            return state.waiters[index].continuation
        }
        continuation?.resume()
    }

    private func suspend(_ ticket: Ticket) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Checked under the lock: a cancellation that came before this point finds no
                // continuation to resume, so the wait must not start.
                let resumeNow = state.withLock { state -> Bool in
                    guard !state.closed, !Task.isCancelled, let index = state.waiters.firstIndex(where: { $0.id == ticket.id }),
                        !state.waiters[index].woken
                    else {
                        return true
                    }
                    state.waiters[index].continuation = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            wake(ticket)
        }
    }
}
