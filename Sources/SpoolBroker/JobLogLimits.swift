import SpoolCore
import SpoolStore

/// How many log lines, and how many bytes of them, a job keeps: past either, the oldest are dropped.
struct JobLogLimits: Sendable, Equatable {
    var maxLines: Int
    var maxBytes: Int64

    /// The newest of `lines` that fit the limits on their own (a write larger than the cap keeps its end).
    func newest(_ lines: [JobLogLine]) -> [JobLogLine] {
        var bytes: Int64 = 0
        var kept = 0
        for line in lines.reversed() {
            bytes += Int64(line.message.utf8.count)
            guard kept < maxLines, bytes <= maxBytes else { break }
            kept += 1
        }
        return kept == lines.count ? lines : Array(lines.suffix(kept))
    }

    /// Whether a job with these stored logs is over the cap.
    func exceeded(by logs: StoredLogs) -> Bool { logs.lines > Int64(maxLines) || logs.bytes > maxBytes }
}
