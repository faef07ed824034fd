/// Where a job is in its life, stored as readable text (`status` column).
///
/// `pending → running → done | failed`, `pending → canceled`, and a running job whose
/// lease expires goes back to `pending` (a retry).
public enum JobStatus: String, Sendable, Codable, CaseIterable {
    case pending, running, done, failed, canceled

    /// Done, failed and canceled jobs never change again.
    public var isTerminal: Bool {
        switch self {
        case .pending, .running: false
        case .done, .failed, .canceled: true
        }
    }
}

/// What can happen to a job; each event names the state it expects to leave.
public enum JobEvent: Sendable, Equatable {
    case claim
    case complete
    case fail
    case cancel
    case leaseExpired(retriesLeft: Bool)
}

/// The job state machine: every transition Spool makes, in one pure function.
///
/// The SQL in SpoolStore mirrors it: each UPDATE names the status it leaves, so the
/// database refuses what this function refuses.
public enum JobStateMachine {
    /// The status a job moves to when `event` happens in `status`, or nil when the event
    /// does not apply (the job is left unchanged).
    public static func next(from status: JobStatus, on event: JobEvent) -> JobStatus? {
        switch (status, event) {
        case (.pending, .claim): .running
        case (.pending, .cancel): .canceled
        case (.running, .complete): .done
        case (.running, .fail): .failed
        case (.running, .leaseExpired(let retriesLeft)): retriesLeft ? .pending : .failed
        default: nil
        }
    }
}
