import Logging

/// Keeps one job's lease alive while its handler runs: heartbeats well inside the lease, and
/// sends emits and log lines shortly after they happen.
struct LeaseKeeper: Sendable {
    enum End: Sendable, Equatable {
        /// The handler finished and the keeper was stopped.
        case stopped
        /// The broker refused the lease (409): the job moved on; report nothing.
        case leaseLost
    }

    let job: LeasedJob
    let context: JobContext
    let reports: Signal
    let broker: BrokerConnection
    let configuration: WorkerConfiguration
    let logger: Logger
    /// Called once when the broker asks the job to stop, or the lease is lost.
    let interruptHandler: @Sendable () -> Void

    /// Runs until cancelled (the handler finished) or the lease is lost.
    func run() async -> End {
        var nextBeat = ContinuousClock.now + configuration.heartbeatInterval
        var interrupted = false
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        while !Task.isCancelled {
            let untilBeat = nextBeat - .now
            if untilBeat > .zero {
                await reports.wait(timeout: untilBeat)
                if Task.isCancelled { break }
                // Coalesce a burst of emits into one heartbeat.
                if context.hasReport && ContinuousClock.now < nextBeat {
                    try? await Task.sleep(for: .seconds(configuration.reportDelaySeconds))
                    // The handler finished meanwhile: its final write carries the report.
                    if Task.isCancelled { break }
                }
                if !context.hasReport && ContinuousClock.now < nextBeat { continue }
            }
            let report = context.takeReport()
            do {
                // Not cancelled with the keeper: a heartbeat cut off after the broker stored its log
                // lines would have them sent again with the final write.
                let (broker, job, leaseSeconds) = (self.broker, self.job, configuration.leaseSeconds)
                let answer = try await Task {
                    try await broker.heartbeat(
                        requestID: job.request_id,
                        HeartbeatRequest(LeaseReport(lease_token: job.lease_token, pending: report), lease_seconds: leaseSeconds))
                }.value
                backoff.reset()
                nextBeat = .now + configuration.heartbeatInterval
                if answer.stop, let reason = answer.stop_reason, !interrupted {
                    logger.notice("the broker asked the job to stop", metadata: ["request_id": "\(job.request_id)", "reason": "\(reason.rawValue)"])
                    context.requestStop(reason)
                    interrupted = true
                    interruptHandler()
                }
            } catch BrokerCallError.leaseLost(let message), BrokerCallError.refused(status: 404, let message) {
                logger.warning("lost the lease; abandoning the job", metadata: ["request_id": "\(job.request_id)", "reason": "\(message)"])
                if !interrupted { interruptHandler() }
                return .leaseLost
            } catch BrokerCallError.refused(let status, let message) {
                // The broker will refuse this report however often it is sent: drop it, keep the lease.
                logger.error(
                    "the broker refused a heartbeat's report; dropping it",
                    metadata: ["request_id": "\(job.request_id)", "status": "\(status)", "reason": "\(message)"])
                nextBeat = .now + backoff.next()
            } catch {
                if Task.isCancelled {
                    context.restoreReport(report)
                    break
                }
                // Transient (or a refusal that may pass): keep what was not delivered, try again soon.
                context.restoreReport(report)
                nextBeat = .now + backoff.next()
            }
        }
        return .stopped
    }
}
