import Foundation

/// What a RunPod worker sees as a job's id: the request id and the lease token of one attempt.
///
/// RunPod's protocol carries no lease token, so the attempt's id carries it: a done, stream or
/// progress from an attempt that is no longer current names a token the job no longer has, and is
/// refused. Clients only ever see the request id.
struct RunPodAttemptID: Sendable, Equatable, CustomStringConvertible {
    var requestID: UUID
    var leaseToken: UUID

    /// `<request id>.<lease token>`, both lowercase.
    var description: String { "\(requestID.uuidString.lowercased()).\(leaseToken.uuidString.lowercased())" }
}

extension RunPodAttemptID {
    init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let requestID = UUID(uuidString: String(parts[0])), let token = UUID(uuidString: String(parts[1])) else {
            return nil
        }
        self.init(requestID: requestID, leaseToken: token)
    }
}
