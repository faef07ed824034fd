import Foundation
import SpoolCore
import Synchronization

/// The status streams open on this broker, by job: a change announced for a job wakes its streams.
final class JobWatchers: Sendable {
    private struct State {
        var nextID = 0
        var signals: [UUID: [Int: Signal]] = [:]
        /// Set at shutdown: streams end so the server can stop.
        var closed = false
    }

    private let state = Mutex(State())

    struct Ticket: Sendable {
        let requestID: UUID
        let id: Int
        let signal: Signal
    }

    func register(_ requestID: UUID) -> Ticket {
        state.withLock { state in
            state.nextID += 1
            let ticket = Ticket(requestID: requestID, id: state.nextID, signal: Signal())
            state.signals[requestID, default: [:]][ticket.id] = ticket.signal
            return ticket
        }
    }

    func unregister(_ ticket: Ticket) {
        state.withLock { state in
            state.signals[ticket.requestID]?[ticket.id] = nil
            if state.signals[ticket.requestID]?.isEmpty == true { state.signals[ticket.requestID] = nil }
        }
    }

    /// Wakes every stream of the job.
    func notify(_ requestID: UUID) {
        let signals = state.withLock { state in state.signals[requestID].map { Array($0.values) } ?? [] }
        for signal in signals { signal.raise() }
    }

    /// Ends every stream at its next turn.
    func close() {
        let signals = state.withLock { state -> [Signal] in
            state.closed = true
            return state.signals.values.flatMap(\.values)
        }
        for signal in signals { signal.raise() }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Streams open now (for metrics and tests).
    var count: Int { state.withLock { $0.signals.values.reduce(0) { $0 + $1.count } } }
}
