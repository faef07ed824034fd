import Foundation
import Synchronization

/// The figures of a run: printed as a table, written as JSON.
final class Report: Sendable {
    struct Figure: Sendable {
        var key: String
        var value: Double
        var what: String
        var unit: String
    }

    private let figures = Mutex<[Figure]>([])

    func add(_ key: String, _ value: Double, _ what: String, _ unit: String) {
        figures.withLock { $0.append(Figure(key: key, value: value, what: what, unit: unit)) }
        let value = Self.format(value)
        print(
            "  " + key.padding(toLength: max(28, key.count + 1), withPad: " ", startingAt: 0)
                + String(repeating: " ", count: max(0, 10 - value.count)) + value
                + " " + unit.padding(toLength: 8, withPad: " ", startingAt: 0) + what)
        // Each figure as it comes, even into a file or pipe: a long run shows where it is.
        fflush(nil)
    }

    var all: [Figure] { figures.withLock { $0 } }

    /// A figure of this run, by key.
    func value(_ key: String) -> Double? { all.last { $0.key == key }?.value }

    func table() -> String {
        var lines = ["| figure | value | unit | what |", "|---|---:|---|---|"]
        for figure in all { lines.append("| `\(figure.key)` | \(Self.format(figure.value)) | \(figure.unit) | \(figure.what) |") }
        return lines.joined(separator: "\n")
    }

    func json(metadata: [String: String]) throws -> Data {
        var object: [String: Any] = [:]
        for figure in all { object[figure.key] = (figure.value * 1000).rounded() / 1000 }
        object["run"] = metadata
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    static func format(_ value: Double) -> String {
        value >= 100 ? String(format: "%.0f", value) : value >= 10 ? String(format: "%.1f", value) : String(format: "%.2f", value)
    }
}
