import SpoolCore
import Testing

@Suite struct JobStateMachineTests {
    static let events: [JobEvent] = [
        .claim, .complete, .fail(retryable: false), .fail(retryable: true), .release, .cancel, .askToStop, .startTimeout, .leaseExpired,
        .undelivered, .requeue,
    ]

    /// Every (status, event) pair of a job with retries to spare and no stop request: the allowed transitions and nothing else.
    @Test func everyTransition() {
        var allowed: [String] = []
        for status in JobStatus.allCases {
            for event in Self.events {
                if let next = JobStateMachine.next(from: status, on: event, retries: 0, retryLimit: 3) {
                    allowed.append("\(status.rawValue) --\(event)--> \(next.status.rawValue)\(next.countsRetry ? " (retry)" : "")")
                }
            }
        }
        #expect(
            allowed == [
                "pending --claim--> running",
                "pending --cancel--> canceled",
                "pending --startTimeout--> failed",
                "running --complete--> done",
                "running --fail(retryable: false)--> failed",
                "running --fail(retryable: true)--> pending (retry)",
                "running --release--> pending",
                "running --askToStop--> running",
                "running --leaseExpired--> pending (retry)",
                "running --undelivered--> pending",
                "failed --requeue--> pending",
            ])
    }

    /// The edges the SQL of claims, cancels, completes, stop requests and timeouts takes its statuses from.
    @Test func singleEdgesForTheSQL() {
        let edges = [JobEvent.claim, .complete, .cancel, .askToStop, .startTimeout, .requeue].map { event in
            let edge = JobStateMachine.edge(event)
            return "\(event): \(edge.from.rawValue) -> \(edge.to.rawValue)"
        }
        #expect(
            edges == [
                "claim: pending -> running", "complete: running -> done", "cancel: pending -> canceled", "askToStop: running -> running",
                "startTimeout: pending -> failed", "requeue: failed -> pending",
            ])
    }

    /// Only an operator's requeue moves a job that ended, and only a failed one.
    @Test func terminalStatusesNeverMove() {
        for status in JobStatus.allCases where status.isTerminal {
            for event in Self.events where !(status == .failed && event == .requeue) {
                #expect(JobStateMachine.next(from: status, on: event) == nil)
            }
        }
        #expect(JobStateMachine.next(from: .failed, on: .requeue) == .init(.pending))
        #expect(JobStatus.allCases.filter(\.isTerminal) == [.done, .failed, .canceled])
    }

    /// With a limit of 3, the third expiry fails the job: retries 0 → 1 → 2 go back, the one that reaches 3 does not.
    @Test func theRetryThatReachesTheLimitFails() {
        for (retries, expected) in [(0, JobStatus.pending), (1, .pending), (2, .failed)] {
            #expect(JobStateMachine.next(from: .running, on: .leaseExpired, retries: retries, retryLimit: 3) == .init(expected, countsRetry: true))
            #expect(
                JobStateMachine.next(from: .running, on: .fail(retryable: true), retries: retries, retryLimit: 3)
                    == .init(expected, countsRetry: true))
        }
        // A release is not the job's fault: it goes back whatever its retries; nor is an answer the worker never got.
        #expect(JobStateMachine.next(from: .running, on: .release, retries: 2, retryLimit: 3) == .init(.pending))
        #expect(JobStateMachine.next(from: .running, on: .undelivered, retries: 2, retryLimit: 3) == .init(.pending))
        #expect(JobStateMachine.next(from: .running, on: .leaseExpired, retries: 0, retryLimit: 1) == .init(.failed, countsRetry: true))
    }

    /// A job asked to stop ends as the stop says, whatever the worker reports, unless it completed.
    @Test func aStoppedJobIsNeverRetried() {
        for event: JobEvent in [.fail(retryable: true), .fail(retryable: false), .release, .leaseExpired, .undelivered] {
            #expect(JobStateMachine.next(from: .running, on: event, stopReason: .canceled)?.status == .canceled)
            #expect(JobStateMachine.next(from: .running, on: event, stopReason: .maxRunTime)?.status == .failed)
        }
        #expect(JobStateMachine.next(from: .running, on: .complete, stopReason: .canceled)?.status == .done)
        #expect(JobStateMachine.next(from: .running, on: .complete, stopReason: .maxRunTime)?.status == .done)
    }
}
