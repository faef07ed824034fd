import Foundation

/// `GET /v1/workers`: the workers brokers have seen in the last day.
public struct WorkersResponse: Sendable, Codable, Equatable {
    public var workers: [WorkerSummary]
    public init(workers: [WorkerSummary]) { self.workers = workers }
}

/// A worker as `GET /v1/workers` lists it.
public struct WorkerSummary: Sendable, Codable, Equatable {
    public var id: String
    public var host: String?
    public var models: [String]
    public var first_seen_at: String
    /// Its last lease request or heartbeat.
    public var last_seen_at: String
    /// Waiting in a long-poll for a job now.
    public var waiting: Bool
    public var jobs_in_hand: Int
    /// Seen within the last minute, or waiting now.
    public var live: Bool

    public init(
        id: String, host: String?, models: [String], first_seen_at: Date, last_seen_at: Date, waiting: Bool, jobs_in_hand: Int, live: Bool
    ) {
        self.id = id
        self.host = host
        self.models = models
        self.first_seen_at = RFC3339.string(from: first_seen_at)
        self.last_seen_at = RFC3339.string(from: last_seen_at)
        self.waiting = waiting
        self.jobs_in_hand = jobs_in_hand
        self.live = live
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(host, forKey: .host)
        try container.encode(models, forKey: .models)
        try container.encode(first_seen_at, forKey: .first_seen_at)
        try container.encode(last_seen_at, forKey: .last_seen_at)
        try container.encode(waiting, forKey: .waiting)
        try container.encode(jobs_in_hand, forKey: .jobs_in_hand)
        try container.encode(live, forKey: .live)
    }
}

/// `GET /v1/models`: every model's queue, from the broker's depth snapshot (a few seconds old at most).
public struct ModelsResponse: Sendable, Codable, Equatable {
    public var models: [ModelSummary]
    public init(models: [ModelSummary]) { self.models = models }
}

public struct ModelSummary: Sendable, Codable, Equatable {
    public var model: String
    public var messages_waiting: Int
    public var messages_running: Int
    public var oldest_waiting_seconds: Double
    /// Waiting jobs per priority tier (keys are the priorities, as strings).
    public var waiting_by_priority: [String: Int]
    public var live_workers: Int

    public init(
        model: String, messages_waiting: Int, messages_running: Int, oldest_waiting_seconds: Double, waiting_by_priority: [String: Int],
        live_workers: Int
    ) {
        self.model = model
        self.messages_waiting = messages_waiting
        self.messages_running = messages_running
        self.oldest_waiting_seconds = oldest_waiting_seconds
        self.waiting_by_priority = waiting_by_priority
        self.live_workers = live_workers
    }
}
