/// Exponential backoff with jitter, capped: how brokers and workers retry what failed.
public struct Backoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    private var current: Duration

    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
        self.current = initial
    }

    /// The next delay: doubles each time up to `maximum`, each one randomised to 50–100% so
    /// many clients that failed together do not retry together.
    public mutating func next() -> Duration {
        defer { current = min(current * 2, maximum) }
        return current * Double.random(in: 0.5...1.0)
    }

    public mutating func reset() { current = initial }
}
