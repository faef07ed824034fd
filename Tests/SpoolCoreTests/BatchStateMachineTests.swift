import SpoolCore
import Testing

@Suite struct BatchStateMachineTests {
    static let events: [BatchEvent] = [
        .validated, .fail, .cancel, .expire, .finish(ending: nil), .finish(ending: .cancel), .finish(ending: .expire),
    ]

    /// Every (status, event) pair: the allowed transitions and nothing else.
    @Test func everyTransition() {
        var allowed: [String] = []
        for status in BatchStatus.allCases {
            for event in Self.events {
                if let next = BatchStateMachine.next(from: status, on: event) { allowed.append("\(status.rawValue) --\(event)--> \(next.rawValue)") }
            }
        }
        #expect(
            allowed == [
                "VALIDATING --validated--> IN_PROGRESS",
                "VALIDATING --fail--> FAILED",
                "VALIDATING --cancel--> CANCELLED",
                "IN_PROGRESS --fail--> FAILED",
                "IN_PROGRESS --cancel--> CANCELLING",
                "IN_PROGRESS --expire--> IN_PROGRESS",
                "IN_PROGRESS --finish(ending: nil)--> COMPLETED",
                "IN_PROGRESS --finish(ending: Optional(SpoolCore.BatchEnding.cancel))--> CANCELLED",
                "IN_PROGRESS --finish(ending: Optional(SpoolCore.BatchEnding.expire))--> EXPIRED",
                "CANCELLING --fail--> FAILED",
                "CANCELLING --cancel--> CANCELLING",
                "CANCELLING --finish(ending: nil)--> CANCELLED",
                "CANCELLING --finish(ending: Optional(SpoolCore.BatchEnding.cancel))--> CANCELLED",
                "CANCELLING --finish(ending: Optional(SpoolCore.BatchEnding.expire))--> CANCELLED",
            ])
    }

    /// A terminal batch never moves, and the statuses no event moves are exactly the terminal ones.
    @Test func terminalStatusesNeverMove() {
        let unmoved = BatchStatus.allCases.filter { status in Self.events.allSatisfy { BatchStateMachine.next(from: status, on: $0) == nil } }
        #expect(unmoved == BatchStatus.allCases.filter(\.isTerminal))
        #expect(unmoved == [.completed, .failed, .expired, .cancelled])
    }

    /// The `status IN (…)` lists the SQL takes from the machine.
    @Test func theSQLsStatusLists() {
        #expect(BatchStateMachine.sources(of: .validated) == [.validating])
        #expect(BatchStateMachine.sources(of: .fail) == [.validating, .inProgress, .cancelling])
        #expect(BatchStateMachine.sources(of: .expire) == [.inProgress])
        #expect(BatchStateMachine.finishing == [.inProgress, .cancelling])
    }
}
