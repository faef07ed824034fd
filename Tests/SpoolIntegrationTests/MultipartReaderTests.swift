import NIOCore
import Testing

@testable import SpoolBroker

@Suite struct MultipartReaderTests {
    @Test func partsAreReadWhateverTheBodyIsCutInto() throws {
        let file = String(repeating: "line --b not a boundary\r\n", count: 40)
        let body =
            "--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n"
            + "--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"
            + file + "\r\n--b--\r\n"
        let bytes = Array(body.utf8)
        for size in [1, 2, 3, 7, 64, 1000, bytes.count] {
            var reader = try #require(MultipartReader(contentType: "multipart/form-data; boundary=b"))
            var parts: [(headers: [String: String], data: [UInt8])] = []
            for start in stride(from: 0, to: bytes.count, by: size) {
                for event in try reader.feed(ByteBuffer(bytes: bytes[start..<min(start + size, bytes.count)])) {
                    switch event {
                    case .part(let headers): parts.append((headers, []))
                    case .data(let data): parts[parts.count - 1].data += Array(data.readableBytesView)
                    }
                }
            }
            #expect(reader.isFinished, "piece size \(size)")
            #expect(parts.count == 2)
            #expect(MultipartReader.disposition(parts[0].headers).name == "purpose")
            #expect(String(decoding: parts[0].data, as: UTF8.self) == "batch-api")
            #expect(MultipartReader.disposition(parts[1].headers) == ("file", "in.jsonl"))
            #expect(parts[1].headers["content-type"] == "application/jsonl")
            #expect(String(decoding: parts[1].data, as: UTF8.self) == file, "piece size \(size)")
        }
        #expect(MultipartReader(contentType: "application/json") == nil)
        #expect(MultipartReader(contentType: "multipart/form-data") == nil)
    }
}
