import Foundation

/// A batch's state, in Together's words.
public enum BatchStatus: String, Sendable, Equatable, CaseIterable {
    case validating = "VALIDATING"
    case inProgress = "IN_PROGRESS"
    case cancelling = "CANCELLING"
    case completed = "COMPLETED"
    case failed = "FAILED"
    case expired = "EXPIRED"
    case cancelled = "CANCELLED"

    public var isTerminal: Bool { [.completed, .failed, .expired, .cancelled].contains(self) }
}

/// Why a batch's lines were stopped before they all ended (`ending` column): it decides what the batch ends as.
public enum BatchEnding: String, Sendable, CaseIterable {
    /// A client canceled the batch.
    case cancel
    /// Its completion window passed.
    case expire

    /// The error of a line stopped by this ending, in the batch's error file.
    public var lineStopReason: String {
        switch self {
        case .cancel: "The batch was canceled before this line finished."
        case .expire: "The batch's completion window passed before this line finished."
        }
    }

    /// The error code of a line stopped by this ending.
    public var lineErrorCode: String {
        switch self {
        case .cancel: "batch_cancelled"
        case .expire: "batch_expired"
        }
    }
}

/// What can happen to a batch.
public enum BatchEvent: Sendable, Equatable {
    /// Every line of its input file was validated and enqueued.
    case validated
    /// Its input failed validation, or a step failed too often.
    case fail
    /// A client canceled it.
    case cancel
    /// Its completion window passed: its unfinished lines are stopped; it stays in progress until they end.
    case expire
    /// Its last line ended and its output files were written; `ending` says why lines were stopped, if they were.
    case finish(ending: BatchEnding?)
}

/// The batch state machine: `VALIDATING → IN_PROGRESS → COMPLETED | FAILED | EXPIRED`,
/// `IN_PROGRESS → CANCELLING → CANCELLED`, a validating batch canceled outright, in one pure function.
public enum BatchStateMachine {
    /// Where a batch in `status` goes on `event`, or nil when the event does not apply (the batch is left as it is).
    public static func next(from status: BatchStatus, on event: BatchEvent) -> BatchStatus? {
        switch (status, event) {
        case (.validating, .validated): .inProgress
        case (.validating, .cancel): .cancelled
        case (.inProgress, .cancel), (.cancelling, .cancel): .cancelling
        case (.validating, .fail), (.inProgress, .fail), (.cancelling, .fail): .failed
        case (.inProgress, .expire): .inProgress
        case (.inProgress, .finish(.none)): .completed
        case (.inProgress, .finish(.expire)): .expired
        case (.inProgress, .finish(.cancel)), (.cancelling, .finish): .cancelled
        default: nil
        }
    }

    /// The statuses `event` applies to: the `WHERE status IN (…)` of the batch's SQL.
    public static func sources(of event: BatchEvent) -> [BatchStatus] {
        BatchStatus.allCases.filter { next(from: $0, on: event) != nil }
    }

    /// The statuses of a batch whose lines are enqueued and not yet finalised: it finishes, whatever its ending.
    public static var finishing: [BatchStatus] {
        let endings: [BatchEnding?] = [nil] + BatchEnding.allCases.map(Optional.some)
        return BatchStatus.allCases.filter { status in endings.contains { next(from: status, on: .finish(ending: $0)) != nil } }
    }
}

/// The endpoints a batch's lines can call.
public enum BatchEndpoint: String, Sendable, CaseIterable {
    /// Each line's body is a queue submit: `{model, payload, info?}`.
    case queueSubmit = "/v1/queue/submit"
    /// Each line's body is a chat completion request; it becomes the payload of a job for `body.model`.
    case chatCompletions = "/v1/chat/completions"
}

/// `POST /v1/batches`, validated.
public struct BatchCreateRequest: Sendable, Equatable {
    public var inputFileID: String
    public var endpoint: BatchEndpoint
    public var completionWindow: String
    public var windowSeconds: Double
    public var modelID: String?
    public var priority: Int32

    /// Longest completion window accepted.
    public static let maxWindowSeconds: Double = 30 * 24 * 3600

    public init(json: JSONValue) throws(SpoolError) {
        let body = try RequestFields(json)
        self.inputFileID = try body.requiredString("input_file_id")
        let endpoint = try body.requiredString("endpoint")
        guard let known = BatchEndpoint(rawValue: endpoint) else {
            let supported = BatchEndpoint.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw .invalidRequest(
                "'endpoint' must be one of \(supported); got '\(endpoint)'.", code: "invalid_field", param: "endpoint")
        }
        self.endpoint = known
        self.completionWindow = try body.optionalString("completion_window", maxLength: 32) ?? "24h"
        self.windowSeconds = try Self.seconds(completionWindow)
        self.modelID = try body.optionalString("model_id", maxLength: RequestFields.maxModelLength)
        self.priority = try body.optionalInt32("priority") ?? 0
    }

    /// "24h", "90m", "2d", "3600s" (or a bare number of seconds) as seconds.
    public static func seconds(_ window: String) throws(SpoolError) -> Double {
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(window.trimmingCharacters(in: .whitespaces).lowercased())
        var unit: Double = 1
        if let last = digits.last, let factor = units[last] {
            unit = factor
            digits = digits.dropLast()
        }
        guard let count = Double(digits), count > 0, count * unit <= maxWindowSeconds else {
            throw .invalidRequest(
                "'completion_window' must be a duration like '24h', '90m' or '2d', at most 30 days; got '\(window)'.",
                code: "invalid_field", param: "completion_window")
        }
        return count * unit
    }
}

/// One line of a batch's input file: `{"custom_id": "…", "body": {…}}`.
public enum BatchLine {
    public static let maxCustomIDLength = 512

    /// The line's custom id and the job it becomes, or a sentence saying what is wrong with it.
    public static func parse(
        _ bytes: ArraySlice<UInt8>, endpoint: BatchEndpoint, defaultModel: String?
    ) -> Result<
        (customID: String, request: SubmitRequest), Problem
    > {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes, strict: true)
        } catch let error as JSONSyntaxError {
            return .failure(Problem("is not valid JSON (\(error.reason))"))
        } catch {
            return .failure(Problem("is not valid JSON"))
        }
        guard let members = json.objectValue else { return .failure(Problem("is not a JSON object")) }
        guard case .string(let customID)? = members["custom_id"], !customID.isEmpty else {
            return .failure(Problem("has no 'custom_id' (a non-empty string)"))
        }
        guard customID.utf8.count <= maxCustomIDLength else {
            return .failure(Problem("has a 'custom_id' longer than \(maxCustomIDLength) bytes"))
        }
        guard case .object(var body)? = members["body"] else { return .failure(Problem("has no 'body' object")) }
        guard !json.containsNUL else { return .failure(Problem("contains a NUL character (\\u0000), which cannot be stored")) }
        switch endpoint {
        case .queueSubmit:
            if body["model"] == nil, let defaultModel { body["model"] = .string(defaultModel) }
            if body["webhook_url"] != nil { return .failure(Problem("sets 'webhook_url', which batch lines do not support")) }
            do throws(SpoolError) {
                return .success((customID, try SubmitRequest(json: .object(body))))
            } catch {
                return .failure(Problem("has a body the queue refuses: \(error.message)"))
            }
        case .chatCompletions:
            let model: String
            if case .string(let named)? = body["model"], !named.isEmpty {
                model = named
            } else if let defaultModel {
                model = defaultModel
                body["model"] = .string(defaultModel)
            } else {
                return .failure(Problem("has a body without 'model' and the batch names no model_id"))
            }
            guard model.unicodeScalars.count <= RequestFields.maxModelLength else {
                return .failure(Problem("names a model longer than \(RequestFields.maxModelLength) characters"))
            }
            guard case .array(let messages)? = body["messages"], !messages.isEmpty else {
                return .failure(Problem("has a body without 'messages' (a non-empty array)"))
            }
            return .success((customID, SubmitRequest(model: model, payload: body)))
        }
    }

    /// What is wrong with a line, as the end of a sentence that starts "line N".
    public struct Problem: Error, Sendable, Equatable {
        public var text: String
        public init(_ text: String) { self.text = text }
    }

    /// The output line of a line that succeeded.
    public static func success(customID: String, requestID: String, outputs: String?) -> [UInt8] {
        let line: JSONValue = [
            "id": .string(requestID), "custom_id": .string(customID),
            "response": ["status_code": 200, "request_id": .string(requestID), "body": outputs.flatMap { try? JSONValue.parse($0) } ?? [:]],
            "error": .null,
        ]
        return Array((line.jsonText + "\n").utf8)
    }

    /// The error-file line of a line that failed or was canceled.
    public static func failure(customID: String, requestID: String, code: String, message: String) -> [UInt8] {
        let line: JSONValue = [
            "id": .string(requestID), "custom_id": .string(customID), "response": .null,
            "error": ["code": .string(code), "message": .string(message)],
        ]
        return Array((line.jsonText + "\n").utf8)
    }
}

/// Splits bytes arriving in pieces into lines (LF or CRLF), carrying a partial line between pieces.
///
/// Each piece is scanned once, and only the partial line is carried, never more than
/// `maxLineBytes`: a longer line is dropped as it arrives and reported as ``Line/tooLong``, so a
/// file with no newline costs neither memory nor repeated scans.
public struct LineSplitter {
    public enum Line: Equatable {
        case text(ArraySlice<UInt8>)
        /// A line longer than the limit; its bytes were dropped.
        case tooLong
    }

    public let maxLineBytes: Int
    private var carry: [UInt8] = []
    /// The current line passed the limit: its bytes are dropped until its newline.
    private var dropping = false

    public init(maxLineBytes: Int = 1 << 20) {
        self.maxLineBytes = maxLineBytes
    }

    /// The lines that end in `piece`, after whatever was carried.
    public mutating func lines(in piece: some Collection<UInt8>) -> [Line] {
        let bytes = Array(piece)
        var lines: [Line] = []
        var start = 0
        while start < bytes.count {
            guard let newline = bytes[start...].firstIndex(of: UInt8(ascii: "\n")) else {
                take(bytes[start...])
                break
            }
            take(bytes[start..<newline])
            lines.append(endLine())
            start = newline + 1
        }
        return lines
    }

    /// The last line, if the input did not end with a newline.
    public mutating func finish() -> Line? {
        guard dropping || !carry.isEmpty else { return nil }
        let line = endLine()
        if case .text(let text) = line, text.isEmpty { return nil }
        return line
    }

    private mutating func take(_ bytes: ArraySlice<UInt8>) {
        guard !dropping else { return }
        // One byte of slack for the CR of a CRLF line exactly at the limit.
        if carry.count + bytes.count > maxLineBytes + 1 {
            dropping = true
            carry = []
        } else {
            carry.append(contentsOf: bytes)
        }
    }

    private mutating func endLine() -> Line {
        defer {
            carry = []
            dropping = false
        }
        if dropping { return .tooLong }
        var line = carry[...]
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        return line.count > maxLineBytes ? .tooLong : .text(ArraySlice(line))
    }
}
