import AsyncHTTPClient
import Foundation
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A handler's file output: uploaded to the broker's files store, and named in the job's outputs
/// by an object (`file_id`, `file_name`, `file_size`, `content_type`, `url`) the client downloads
/// with its own key.
extension BrokerConnection {
    /// Streams the file at `path` to the broker, a piece at a time; transient failures are retried
    /// from the start (a failed upload stores nothing). Throws a retryable ``JobFailure`` when the
    /// upload cannot be made, so the job runs again instead of finishing without its file.
    func uploadFile(requestID: String, leaseToken: String, path: String, name: String, contentType: String) async throws -> JSONValue {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(5))
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await uploadOnce(requestID: requestID, leaseToken: leaseToken, path: path, name: name, contentType: contentType)
            } catch BrokerCallError.transient(let message) where attempt < 5 && !Task.isCancelled {
                logger.debug("file upload failed; retrying", metadata: ["file": "\(name)", "reason": "\(message)"])
                try await Task.sleep(for: backoff.next())
            } catch let error as BrokerCallError {
                throw JobFailure("The output file '\(name)' could not be uploaded: \(error)", retryable: true)
            }
        }
    }

    private func uploadOnce(requestID: String, leaseToken: String, path: String, name: String, contentType: String) async throws -> JSONValue {
        var info = stat()
        guard stat(path, &info) == 0 else { throw JobFailure("The output file '\(path)' cannot be read: \(String(cString: strerror(errno))).") }
        let base = currentURL
        var query = URLComponents()
        query.queryItems = [.init(name: "lease_token", value: leaseToken), .init(name: "name", value: name)]
        var request = HTTPClientRequest(url: "\(base)/v1/worker/jobs/\(requestID)/files?\(query.percentEncodedQuery ?? "")")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: contentType)
        if let apiKey { request.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        request.body = .stream(FileChunks(path: path), length: .known(Int64(info.st_size)))
        let status: Int
        let bytes: ByteBuffer
        do {
            // Generous: a large file over a slow link; the broker streams it into PostgreSQL as it arrives.
            let response = try await http.execute(request, timeout: .hours(1))
            status = Int(response.status.code)
            bytes = try await response.body.collect(upTo: 1 << 20)
        } catch let error as JobFailure {
            throw error
        } catch {
            if Task.isCancelled { throw CancellationError() }
            throw BrokerCallError.transient("\(base) unreachable: \(error)")
        }
        switch status {
        case 200..<300:
            guard let answer = try? JSONValue.parse(bytes.readableBytesView), answer.objectValue?["file_id"] != nil else {
                throw BrokerCallError.refused(status: status, message: "unreadable answer to a file upload")
            }
            return answer
        case 409: throw BrokerCallError.leaseLost(String(buffer: bytes))
        case 429, 500...: throw BrokerCallError.transient("file upload answered \(status): \(String(buffer: bytes).prefix(300))")
        default: throw BrokerCallError.refused(status: status, message: String(buffer: bytes).prefix(300).description)
        }
    }

    /// A content type for a file name's extension.
    static func contentType(forFileNamed name: String) -> String {
        let types = [
            "mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
            "webp": "image/webp", "gif": "image/gif", "wav": "audio/wav", "mp3": "audio/mpeg", "json": "application/json",
            "jsonl": "application/jsonl", "txt": "text/plain", "bin": "application/octet-stream",
        ]
        let ext = (name as NSString).pathExtension.lowercased()
        return types[ext] ?? "application/octet-stream"
    }
}

/// A file's bytes as 1 MiB buffers, read as the upload asks for them: never the whole file in memory.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String
    static let pieceBytes = 1 << 20

    final class AsyncIterator: AsyncIteratorProtocol {
        private var descriptor: Int32 = -1
        private let path: String
        private var done = false

        init(path: String) { self.path = path }

        func next() async throws -> ByteBuffer? {
            guard !done else { return nil }
            if descriptor < 0 {
                descriptor = open(path, O_RDONLY)
                guard descriptor >= 0 else { throw JobFailure("The output file '\(path)' cannot be opened: \(String(cString: strerror(errno))).") }
            }
            var buffer = ByteBuffer()
            buffer.reserveCapacity(FileChunks.pieceBytes)
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: FileChunks.pieceBytes) { pointer in
                var total = 0
                while total < FileChunks.pieceBytes {
                    let n = read(descriptor, pointer.baseAddress! + total, FileChunks.pieceBytes - total)
                    if n <= 0 { break }
                    total += n
                }
                return total
            }
            if count == 0 {
                finish()
                return nil
            }
            return buffer
        }

        private func finish() {
            done = true
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
        }

        deinit { if descriptor >= 0 { close(descriptor) } }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(path: path) }
}
