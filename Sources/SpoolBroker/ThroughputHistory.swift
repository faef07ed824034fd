import Foundation
import Logging
import SpoolCore
import SpoolStore

/// `GET /v1/stats/history`'s answer: each model's done and failed jobs per minute over the last
/// hour, read at most once per `maxAge` per replica however many dashboards poll it (their
/// requests share one read in flight).
actor ThroughputHistory {
    let store: Store
    let maxAge: Duration
    private var cached: (at: ContinuousClock.Instant, answer: JSONValue)?
    private var reading: Task<JSONValue, any Error>?

    init(store: Store, maxAge: Duration = .seconds(5)) {
        self.store = store
        self.maxAge = maxAge
    }

    func answer(logger: Logger) async throws -> JSONValue {
        if let cached, ContinuousClock.now - cached.at < maxAge { return cached.answer }
        if let reading { return try await reading.value }
        let store = store
        let task = Task { Self.answer(try await store.jobs.finishedPerMinute(on: store.client, logger: logger)) }
        reading = task
        defer { reading = nil }
        let answer = try await task.value
        cached = (ContinuousClock.now, answer)
        return answer
    }

    /// 60 counts per model and end status, oldest minute first.
    static func answer(_ history: FinishedHistory) -> JSONValue {
        var series: [String: (completed: [Int], failed: [Int])] = [:]
        for minute in history.minutes {
            var counts = series[minute.model] ?? (Array(repeating: 0, count: 60), Array(repeating: 0, count: 60))
            let index = 59 - min(max(minute.minutesAgo, 0), 59)
            if minute.status == .done { counts.completed[index] += minute.count } else { counts.failed[index] += minute.count }
            series[minute.model] = counts
        }
        return .object([
            "bucket_seconds": 60, "end": .string(RFC3339.string(from: history.now)), "capped": .bool(history.capped),
            "models": .array(
                series.keys.sorted().map { model in
                    .object([
                        "model": .string(model), "completed": .array(series[model]!.completed.map { .int(Int64($0)) }),
                        "failed": .array(series[model]!.failed.map { .int(Int64($0)) }),
                    ])
                }),
        ])
    }
}
