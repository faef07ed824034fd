import SpoolCore
import Synchronization

/// Uploads in progress on this broker, per API key: one key cannot hold more than its share of
/// connections and memory with uploads that trickle or stall. The cap is per replica.
final class UploadSlots: Sendable {
    let maxPerKey: Int
    private let inProgress = Mutex<[String: Int]>([:])

    init(maxPerKey: Int) {
        self.maxPerKey = maxPerKey
    }

    /// A slot for `key`'s upload, or a 429 when it has `maxPerKey` under way.
    func acquire(for key: String) throws(SpoolError) -> Slot {
        let granted = inProgress.withLock { counts -> Bool in
            guard counts[key, default: 0] < maxPerKey else { return false }
            counts[key, default: 0] += 1
            return true
        }
        guard granted else {
            throw .tooManyRequests(
                "This API key already has \(maxPerKey) uploads in progress on this broker (--max-uploads-per-key); retry when one has finished.",
                code: "too_many_uploads", retryAfterSeconds: 5)
        }
        return Slot(slots: self, key: key)
    }

    /// Uploads in progress now, for every key together.
    var count: Int { inProgress.withLock { $0.values.reduce(0, +) } }

    fileprivate func release(_ key: String) {
        inProgress.withLock { counts in
            let left = counts[key, default: 1] - 1
            counts[key] = left > 0 ? left : nil
        }
    }

    /// An upload's place; give it back when the upload ends, however it ends.
    struct Slot: Sendable {
        fileprivate let slots: UploadSlots
        fileprivate let key: String

        func release() { slots.release(key) }
    }
}
