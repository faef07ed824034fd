import Foundation
import NIOCore
import SpoolCore

/// Reads a `multipart/form-data` body as it arrives: part headers, then the part's bytes in
/// pieces, so a file part is stored without the whole body in memory.
struct MultipartReader {
    enum Event: Equatable {
        /// A part begins; its headers, names lowercased.
        case part([String: String])
        case data(ByteBuffer)
    }

    private enum State { case preamble, headers, body, done }

    private let delimiter: [UInt8]
    private var state = State.preamble
    private var buffer: [UInt8] = []

    /// Nil when `contentType` is not multipart/form-data with a boundary.
    init?(contentType: String?) {
        guard let contentType, contentType.lowercased().hasPrefix("multipart/form-data") else { return nil }
        guard
            let boundary = contentType.split(separator: ";").lazy
                .map({ $0.trimmingCharacters(in: .whitespaces) })
                .first(where: { $0.lowercased().hasPrefix("boundary=") })?
                .dropFirst("boundary=".count)
        else { return nil }
        let unquoted = boundary.trimmingCharacters(in: CharacterSet(charactersIn: "\""))
        guard !unquoted.isEmpty else { return nil }
        delimiter = Array("\r\n--\(unquoted)".utf8)
        // The first boundary may open the body without a CRLF before it.
        buffer = Array("\r\n".utf8)
    }

    var isFinished: Bool { state == .done }

    /// The events the bytes so far complete.
    mutating func feed(_ piece: ByteBuffer) throws(SpoolError) -> [Event] {
        buffer.append(contentsOf: piece.readableBytesView)
        var events: [Event] = []
        while true {
            switch state {
            case .preamble:
                guard let found = find(delimiter) else {
                    // Keep what could still be the start of the first delimiter.
                    buffer.removeFirst(max(0, buffer.count - delimiter.count))
                    return events
                }
                buffer.removeFirst(found + delimiter.count)
                state = .headers
            case .headers:
                if buffer.count >= 2, buffer[0] == UInt8(ascii: "-"), buffer[1] == UInt8(ascii: "-") {
                    state = .done
                    buffer = []
                    return events
                }
                guard let end = find(Array("\r\n\r\n".utf8)) else {
                    guard buffer.count < 16 << 10 else { throw Self.malformed("a part's headers are longer than 16 KiB") }
                    return events
                }
                let text = String(decoding: buffer[..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                var headers: [String: String] = [:]
                for line in text.split(separator: "\r\n") where line.contains(":") {
                    let pieces = line.split(separator: ":", maxSplits: 1)
                    headers[pieces[0].trimmingCharacters(in: .whitespaces).lowercased()] =
                        pieces.count > 1 ? pieces[1].trimmingCharacters(in: .whitespaces) : ""
                }
                events.append(.part(headers))
                state = .body
            case .body:
                if let found = find(delimiter) {
                    if found > 0 { events.append(.data(ByteBuffer(bytes: buffer[..<found]))) }
                    buffer.removeFirst(found + delimiter.count)
                    state = .headers
                } else {
                    let safe = buffer.count - (delimiter.count - 1)
                    if safe > 0 {
                        events.append(.data(ByteBuffer(bytes: buffer[..<safe])))
                        buffer.removeFirst(safe)
                    }
                    return events
                }
            case .done:
                buffer = []
                return events
            }
        }
    }

    /// The offset of `needle` in the buffer, if it is there.
    private func find(_ needle: [UInt8]) -> Int? {
        guard buffer.count >= needle.count, let first = needle.first else { return nil }
        var index = 0
        let last = buffer.count - needle.count
        return buffer.withUnsafeBufferPointer { bytes in
            while index <= last {
                guard let candidate = bytes[index...last].firstIndex(of: first) else { return nil }
                if bytes[candidate..<candidate + needle.count].elementsEqual(needle) { return candidate }
                index = candidate + 1
            }
            return nil
        }
    }

    static func malformed(_ detail: String) -> SpoolError {
        .invalidRequest("The multipart/form-data body is malformed: \(detail).", code: "invalid_multipart")
    }

    /// A part's form field name and file name, from its Content-Disposition.
    static func disposition(_ headers: [String: String]) -> (name: String?, filename: String?) {
        guard let value = headers["content-disposition"] else { return (nil, nil) }
        var name: String?
        var filename: String?
        for parameter in value.split(separator: ";").dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2 else { continue }
            let key = pair[0].trimmingCharacters(in: .whitespaces).lowercased()
            let text = pair[1].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
            if key == "name" { name = text } else if key == "filename" { filename = text }
        }
        return (name, filename)
    }
}
