import Testing

@testable import SpoolCore

@Suite struct BatchLineTests {
    func parse(
        _ text: String, _ endpoint: BatchEndpoint = .queueSubmit, model: String? = nil
    ) -> Result<
        (customID: String, request: SubmitRequest), BatchLine.Problem
    > {
        BatchLine.parse(ArraySlice(Array(text.utf8)), endpoint: endpoint, defaultModel: model)
    }

    @Test func aQueueLineBecomesASubmit() throws {
        let parsed = try parse(#"{"custom_id": "a", "body": {"model": "m", "payload": {"x": 1}, "info": {"k": "v"}}}"#).get()
        #expect(parsed.customID == "a")
        #expect(parsed.request.model == "m" && parsed.request.payload == ["x": 1] && parsed.request.info == ["k": "v"])
        // The batch's model_id stands in for a body without one.
        #expect(try parse(#"{"custom_id": "b", "body": {"payload": {}}}"#, model: "d").get().request.model == "d")
    }

    @Test func aChatLineBecomesAJobForItsModelWithTheBodyAsPayload() throws {
        let parsed = try parse(#"{"custom_id": "c", "body": {"model": "llama", "messages": [{"role": "user", "content": "hi"}]}}"#, .chatCompletions)
            .get()
        #expect(parsed.request.model == "llama")
        #expect(parsed.request.payload["messages"] == [["role": "user", "content": "hi"]])
        #expect(parsed.request.payload["model"] == "llama")
    }

    @Test func badLinesSayWhatIsWrong() {
        let cases: [(String, BatchEndpoint, String)] = [
            ("{oops", .queueSubmit, "is not valid JSON"),
            ("[1]", .queueSubmit, "is not a JSON object"),
            (#"{"body": {}}"#, .queueSubmit, "has no 'custom_id'"),
            (#"{"custom_id": "a"}"#, .queueSubmit, "has no 'body' object"),
            (#"{"custom_id": "a", "body": {"model": "m"}}"#, .queueSubmit, "'payload' is required"),
            (#"{"custom_id": "a", "body": {"model": "m", "payload": {}, "webhook_url": "https://x"}}"#, .queueSubmit, "webhook_url"),
            (#"{"custom_id": "a", "body": {"messages": [{"role": "user"}]}}"#, .chatCompletions, "without 'model'"),
            (#"{"custom_id": "a", "body": {"model": "m", "messages": []}}"#, .chatCompletions, "'messages'"),
        ]
        for (line, endpoint, expected) in cases {
            guard case .failure(let problem) = parse(line, endpoint) else {
                Issue.record("accepted: \(line)")
                continue
            }
            #expect(problem.text.contains(expected), "\(line): \(problem.text)")
        }
    }

    @Test func linesAreSplitAcrossPiecesAndCRLF() {
        let text = "one\r\ntwo\nthree\n\nfour"
        for size in 1...text.utf8.count {
            var splitter = LineSplitter()
            var lines: [String] = []
            let bytes = Array(text.utf8)
            for start in stride(from: 0, to: bytes.count, by: size) {
                lines += splitter.lines(in: bytes[start..<min(start + size, bytes.count)]).map(Self.text)
            }
            if let last = splitter.finish() { lines.append(Self.text(last)) }
            #expect(lines == ["one", "two", "three", "", "four"], "piece size \(size)")
        }
    }

    static func text(_ line: LineSplitter.Line) -> String {
        switch line {
        case .text(let bytes): String(decoding: bytes, as: UTF8.self)
        case .tooLong: "<too long>"
        }
    }

    /// A line over the limit is reported as too long without being kept, whatever the piece size,
    /// and the lines around it are intact.
    @Test func aLineOverTheLimitIsDroppedNotKept() {
        let long = String(repeating: "x", count: 25)
        let text = "ok\n\(long)\nelevenchars\r\n0123456789\n\(long)"
        for size in 1...text.utf8.count {
            var splitter = LineSplitter(maxLineBytes: 10)
            var lines: [String] = []
            let bytes = Array(text.utf8)
            for start in stride(from: 0, to: bytes.count, by: size) {
                lines += splitter.lines(in: bytes[start..<min(start + size, bytes.count)]).map(Self.text)
            }
            if let last = splitter.finish() { lines.append(Self.text(last)) }
            #expect(lines == ["ok", "<too long>", "<too long>", "0123456789", "<too long>"], "piece size \(size)")
        }
    }

    /// A file with no newline at all is one too-long line, reported at its end, never carried whole.
    @Test func aFileWithoutNewlinesIsOneTooLongLine() {
        var splitter = LineSplitter(maxLineBytes: 1024)
        let piece = [UInt8](repeating: UInt8(ascii: "{"), count: 1 << 20)
        for _ in 0..<16 { #expect(splitter.lines(in: piece).isEmpty) }
        #expect(splitter.finish() == .tooLong)
    }

    @Test func completionWindows() throws {
        #expect(try BatchCreateRequest.seconds("24h") == 86400)
        #expect(try BatchCreateRequest.seconds("90m") == 5400)
        #expect(try BatchCreateRequest.seconds("2d") == 172_800)
        #expect(try BatchCreateRequest.seconds("30") == 30)
        for bad in ["", "soon", "0h", "-1h", "31d"] {
            #expect(throws: SpoolError.self, "\(bad)") { try BatchCreateRequest.seconds(bad) }
        }
    }
}
