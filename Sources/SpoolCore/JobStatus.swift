/// Where a job is in its life, stored as readable text (`status` column).
///
/// `pending → running → done | failed`, `pending → canceled | failed` (its start timeout), a running job whose lease
/// expires goes back to `pending` (a retry), and an operator may send a failed job back to `pending`.
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

/// Why the broker asked a running job to stop (`stop_reason` column); a worker hears it at its next heartbeat.
public enum StopReason: String, Sendable, Codable, CaseIterable {
    /// A client canceled the job while it ran.
    case canceled
    /// The attempt ran past the broker's maximum run time.
    case maxRunTime = "max_run_time"
}

/// What can happen to a job; each event names the state it expects to leave.
public enum JobEvent: Sendable, Equatable {
    /// A worker leased the job.
    case claim
    /// The worker finished it with outputs.
    case complete
    /// The worker gave up on it; `retryable` lets it run again.
    case fail(retryable: Bool)
    /// A draining worker handed it back unfinished: not the job's fault, so no retry is counted.
    case release
    /// A client canceled it (one job, a model's whole queue, or its batch) before it started.
    case cancel
    /// The broker asked it to stop while it runs (a cancel, its run time, its batch ending): it stays
    /// running, with a stop reason, until its worker answers or its lease ends.
    case askToStop
    /// It waited past its start deadline (fal's `X-Fal-Request-Timeout`) with no worker taking it.
    case startTimeout
    /// Its lease ran out: the worker died, hung or lost the broker.
    case leaseExpired
    /// The lease's answer never reached the worker (it hung up first): back to the queue as if
    /// never claimed, with no retry counted.
    case undelivered
    /// An operator sent a failed job back to the queue for another attempt (its history is kept).
    case requeue
}

/// The outcome of an event: the status to move to, and whether it uses up one of the job's retries.
public struct JobTransition: Sendable, Equatable {
    public var status: JobStatus
    public var countsRetry: Bool

    public init(_ status: JobStatus, countsRetry: Bool = false) {
        self.status = status
        self.countsRetry = countsRetry
    }
}

/// The job state machine: every transition Spool makes, in one pure function.
///
/// The SQL in SpoolStore follows it: each UPDATE names the status it leaves (and, for worker
/// writes, the lease token), so the database refuses what this function refuses.
public enum JobStateMachine {
    /// Where a job in `status` goes when `event` happens, or nil when the event does not apply
    /// (the job is left unchanged).
    ///
    /// - Parameters:
    ///   - stopReason: set when the broker asked the running job to stop; a job asked to stop is never retried.
    ///   - retries: retries the job has used so far.
    ///   - retryLimit: retries allowed; the retry that reaches it fails the job instead.
    public static func next(
        from status: JobStatus, on event: JobEvent, stopReason: StopReason? = nil, retries: Int = 0, retryLimit: Int = 3
    ) -> JobTransition? {
        let retryAllowed = retries + 1 < retryLimit
        switch (status, event) {
        case (.pending, .claim): return JobTransition(.running)
        case (.pending, .cancel): return JobTransition(.canceled)
        case (.pending, .startTimeout): return JobTransition(.failed)
        case (.running, .askToStop): return JobTransition(.running)
        case (.running, .complete): return JobTransition(.done)
        case (.running, .fail(let retryable)):
            if let stopReason { return stopped(stopReason) }
            guard retryable else { return JobTransition(.failed) }
            return JobTransition(retryAllowed ? .pending : .failed, countsRetry: true)
        case (.running, .release):
            if let stopReason { return stopped(stopReason) }
            return JobTransition(.pending)
        case (.running, .undelivered):
            if let stopReason { return stopped(stopReason) }
            return JobTransition(.pending)
        case (.failed, .requeue): return JobTransition(.pending)
        case (.running, .leaseExpired):
            if let stopReason { return stopped(stopReason) }
            return JobTransition(retryAllowed ? .pending : .failed, countsRetry: true)
        default:
            return nil
        }
    }

    /// The one status `event` leaves and the one it enters, for events whose outcome needs no facts
    /// of the job (its retries, a stop request): the SQL of claims, cancels, completes and timeouts
    /// names both from here, so the database refuses what `next` refuses.
    public static func edge(_ event: JobEvent) -> (from: JobStatus, to: JobStatus) {
        let edges = JobStatus.allCases.compactMap { status in next(from: status, on: event).map { (from: status, to: $0.status) } }
        precondition(edges.count == 1, "\(event) is not a single edge: \(edges)")
        return edges[0]
    }

    /// A job asked to stop ends as what the stop was for, whatever the worker says.
    private static func stopped(_ reason: StopReason) -> JobTransition {
        switch reason {
        case .canceled: JobTransition(.canceled)
        case .maxRunTime: JobTransition(.failed)
        }
    }
}
