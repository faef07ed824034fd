import SpoolCore
import Testing

@Suite struct JobStateMachineTests {
    /// Every (status, event) pair: the allowed transitions and nothing else.
    @Test func everyTransition() {
        let events: [JobEvent] = [.claim, .complete, .fail, .cancel, .leaseExpired(retriesLeft: true), .leaseExpired(retriesLeft: false)]
        var allowed: [String] = []
        for status in JobStatus.allCases {
            for event in events {
                if let next = JobStateMachine.next(from: status, on: event) {
                    allowed.append("\(status.rawValue) --\(event)--> \(next.rawValue)")
                }
            }
        }
        #expect(
            allowed == [
                "pending --claim--> running",
                "pending --cancel--> canceled",
                "running --complete--> done",
                "running --fail--> failed",
                "running --leaseExpired(retriesLeft: true)--> pending",
                "running --leaseExpired(retriesLeft: false)--> failed",
            ])
    }

    @Test func terminalStatusesNeverMove() {
        let events: [JobEvent] = [.claim, .complete, .fail, .cancel, .leaseExpired(retriesLeft: true)]
        for status in JobStatus.allCases where status.isTerminal {
            for event in events {
                #expect(JobStateMachine.next(from: status, on: event) == nil)
            }
        }
        #expect(JobStatus.allCases.filter(\.isTerminal) == [.done, .failed, .canceled])
    }
}
