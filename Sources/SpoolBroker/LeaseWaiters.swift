import SpoolStore
import Synchronization

/// The lease requests waiting on this broker for jobs, and the wake-ups that reach them.
///
/// A NOTIFY for a model wakes the longest-waiting lease that serves it, one per notification: a
/// woken lease that claims a full batch wakes the next (there may be more), so a burst of
/// submits fans out without waking a thousand long-polls for one job.
///
/// A submit on this broker may instead hand its job straight to a waiting lease: it reserves the
/// lease (no other submit or wake-up takes it), stores the job as that lease's, then delivers it
/// or, when the job had to wait its turn in the queue, cancels the reservation and wakes the lease
/// to claim. A reserved lease's wait does not end before that resolution, so no job is handed to
/// a lease that has gone.
final class LeaseWaiters: Sendable {
    private struct Waiter {
        let id: Int
        let models: Set<String>
        /// The terms a handed-over job is leased on; nil for waiters that take no handovers.
        let terms: HandoverLease?
        var woken = false
        var continuation: CheckedContinuation<Void, Never>?
        /// A submit is storing a job for this waiter.
        var reserved = false
        /// Where a wait that ended during a reservation waits for it to resolve.
        var resolution: CheckedContinuation<Void, Never>?
        var handedOver: [ClaimedJob] = []
    }

    private struct State {
        var nextID = 0
        /// Set at shutdown: every wait returns at once, so long-polls end and the server can stop.
        var closed = false
        /// In arrival order: the first waiter for a model is woken first.
        var waiters: [Waiter] = []
        /// How many times ``wakeAll`` ran (the listener does so each time it starts listening).
        var wakeAlls = 0
    }

    private let state = Mutex(State())

    /// A registered waiter; keep it across claim attempts so no wake-up between them is missed.
    struct Ticket: Sendable {
        fileprivate let id: Int
    }

    /// A waiting lease reserved for a job being submitted; resolve it with `deliver` or `cancel`.
    struct Reservation: Sendable {
        fileprivate let id: Int
        let terms: HandoverLease
    }

    /// Registers a waiter before its first claim, so a job submitted during that claim still wakes it.
    /// With `terms`, a submit on this broker may hand it a job while it waits.
    func register(models: [String], terms: HandoverLease? = nil) -> Ticket {
        state.withLock { state in
            state.nextID += 1
            state.waiters.append(Waiter(id: state.nextID, models: Set(models), terms: terms))
            return Ticket(id: state.nextID)
        }
    }

    /// Reserves the longest-waiting lease that takes `model` and is idle in its wait (not claiming:
    /// a job handed over then could exceed what it asked for).
    func reserve(model: String) -> Reservation? {
        state.withLock { state in
            guard !state.closed,
                let index = state.waiters.firstIndex(where: { waiter in
                    waiter.continuation != nil && !waiter.woken && !waiter.reserved && waiter.terms != nil && waiter.models.contains(model)
                }),
                let terms = state.waiters[index].terms
            else { return nil }
            state.waiters[index].reserved = true
            return Reservation(id: state.waiters[index].id, terms: terms)
        }
    }

    /// Gives the reserved lease the jobs stored for it; false when it is gone (it cannot be: its
    /// wait outlasts the reservation), and the caller hands them back.
    func deliver(_ jobs: [ClaimedJob], to reservation: Reservation) -> Bool {
        resolve(reservation, with: jobs)
    }

    /// Ends a reservation whose job went into the queue instead: the lease is woken to claim it.
    func cancel(_ reservation: Reservation) {
        _ = resolve(reservation, with: [])
    }

    private func resolve(_ reservation: Reservation, with jobs: [ClaimedJob]) -> Bool {
        let (found, continuations) = state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
            guard let index = state.waiters.firstIndex(where: { $0.id == reservation.id }) else { return (false, []) }
            state.waiters[index].reserved = false
            state.waiters[index].handedOver = jobs
            state.waiters[index].woken = true
            let continuations = [state.waiters[index].continuation, state.waiters[index].resolution].compactMap { $0 }
            state.waiters[index].continuation = nil
            state.waiters[index].resolution = nil
            return (true, continuations)
        }
        for continuation in continuations { continuation.resume() }
        return found
    }

    func unregister(_ ticket: Ticket) {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let index = state.waiters.firstIndex(where: { $0.id == ticket.id }) else { return nil }
            return state.waiters.remove(at: index).continuation
        }
        continuation?.resume()
    }

    /// Waits until woken, `timeout` passes, or the task is cancelled; then clears the wake-up for the
    /// next round. Answers the jobs a submit handed over meanwhile (they are this lease's now).
    func wait(_ ticket: Ticket, timeout: Duration) async -> [ClaimedJob] {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.suspend(ticket) }
            group.addTask {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { self.wake(ticket) }
            }
            await group.next()
            group.cancelAll()
        }
        // A submit storing a job for this lease resolves in one statement; its job must not be
        // handed to a lease that has left.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resolved = state.withLock { state -> Bool in
                guard let index = state.waiters.firstIndex(where: { $0.id == ticket.id }), state.waiters[index].reserved else { return true }
                state.waiters[index].resolution = continuation
                return false
            }
            if resolved { continuation.resume() }
        }
        return state.withLock { state in
            guard let index = state.waiters.firstIndex(where: { $0.id == ticket.id }) else { return [] }
            state.waiters[index].woken = false
            defer { state.waiters[index].handedOver = [] }
            return state.waiters[index].handedOver
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
        for continuation in continuations { continuation.resume() }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Wakes up to `count` waiters that serve `model`, longest-waiting first.
    func notify(model: String, count: Int = 1) {
        let continuations = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var woken: [CheckedContinuation<Void, Never>] = []
            var remaining = count
            for index in state.waiters.indices where remaining > 0 {
                // A reserved lease is getting a job already; if that job waits instead, it is woken then.
                guard !state.waiters[index].woken, !state.waiters[index].reserved, state.waiters[index].models.contains(model) else {
                    continue
                }
                state.waiters[index].woken = true
                remaining -= 1
                if let continuation = state.waiters[index].continuation {
                    state.waiters[index].continuation = nil
                    woken.append(continuation)
                }
            }
            return woken
        }
        for continuation in continuations { continuation.resume() }
    }

    /// Wakes the longest waiter of every waited-for model to claim again: anything may have been
    /// submitted while no one listened (a claim that fills its lease wakes the next waiter).
    func wakeAll() {
        let models = state.withLock { state in
            state.wakeAlls += 1
            return Set(state.waiters.flatMap(\.models))
        }
        for model in models { notify(model: model) }
    }

    /// How many times ``wakeAll`` ran (for tests: above 0 once the listener listens).
    var wakeAlls: Int { state.withLock { $0.wakeAlls } }

    /// The models some waiter serves: what the fallback poll asks the database about.
    var waitedForModels: [String] {
        state.withLock { state in Array(Set(state.waiters.flatMap(\.models))) }
    }

    /// Waiters registered now (for metrics and tests).
    var count: Int { state.withLock { $0.waiters.count } }

    /// Waiters idle in a wait, which a submit may hand a job to (for tests).
    var idleCount: Int { state.withLock { state in state.waiters.count { $0.continuation != nil && !$0.woken && !$0.reserved } } }

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
