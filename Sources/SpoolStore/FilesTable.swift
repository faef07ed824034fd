import Crypto
import Foundation
import Logging
import NIOCore
import PostgresNIO
import SpoolCore

/// A stored file's metadata.
public struct FileRecord: Sendable, Equatable {
    public var id: String
    public var filename: String
    public var purpose: String
    public var fileType: String
    public var contentType: String
    public var bytes: Int64
    public var sha256: String?
    public var isReady: Bool
    public var requestID: UUID?
    public var createdAt: Date
}

/// What a streamed upload ended with.
public enum FileUploadError: Error, Sendable, Equatable {
    /// The content passed the size limit; nothing was kept.
    case tooLarge(limit: Int64)
    /// The content's SHA-256 is not the checksum the client announced; nothing was kept.
    case checksumMismatch(expected: String, actual: String)
}

/// The `files` and `file_chunks` tables: metadata, and content in 1 MiB pieces.
public struct FilesTable: Sendable {
    public init() {}

    /// The size of each stored piece: what an upload or a download holds in memory at a time.
    public static let chunkBytes = 1 << 20

    public static func newID() -> String { "file-" + UUID().uuidString.lowercased() }

    /// Records a file whose content is still to come (Together's upload: metadata first, then a PUT).
    public func create(
        id: String, filename: String, purpose: String, fileType: String, contentType: String, expectedSHA256: String?,
        uploadTokenHash: String?, owner: String, requestID: UUID? = nil, on database: some PostgresQueryable, logger: Logger
    ) async throws {
        try await database.run(
            """
            INSERT INTO files (id, filename, purpose, file_type, content_type, expected_sha256, upload_token_hash, owner, request_id)
            VALUES (\(id), \(filename), \(purpose), \(fileType), \(contentType), \(expectedSHA256), \(uploadTokenHash), \(owner), \(requestID))
            """, logger: logger)
    }

    /// Replaces the file's content with `body`, piece by piece, and marks it ready; call it inside a
    /// transaction so a failed or refused upload leaves nothing behind.
    public func writeContent<Body: AsyncSequence>(
        fileID: String, body: Body, limit: Int64, expectedSHA256: String?, on connection: PostgresConnection, logger: Logger
    ) async throws -> (bytes: Int64, sha256: String) where Body.Element == ByteBuffer {
        let writer = try await FileContentWriter(fileID: fileID, limit: limit, connection: connection, logger: logger)
        for try await buffer in body { try await writer.append(buffer) }
        return try await writer.finish(expectedSHA256: expectedSHA256)
    }

    /// Sets what a multipart upload's fields said once its file part has been stored.
    public func describe(id: String, filename: String, purpose: String, fileType: String, on database: some PostgresQueryable, logger: Logger)
        async throws
    {
        try await database.run(
            "UPDATE files SET filename = \(filename), purpose = \(purpose), file_type = \(fileType) WHERE id = \(id)", logger: logger)
    }

    /// Locks the file's row for this transaction: two uploads of one file store one after the other.
    public func lock(id: String, on connection: PostgresConnection, logger: Logger) async throws {
        _ = try await connection.run("SELECT 1 FROM files WHERE id = \(id) FOR UPDATE", logger: logger).collect()
    }

    /// Whether the file is ready, holding it for this transaction: a delete waits until the reader is done.
    public func holdForReading(id: String, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        let rows = try await connection.run("SELECT status FROM files WHERE id = \(id) FOR SHARE", logger: logger).collect()
        return try rows.first?.decode(String.self) == "ready"
    }

    /// The file, ready or still uploading.
    public func find(id: String, on database: some PostgresQueryable, logger: Logger) async throws -> FileRecord? {
        let rows = try await database.run(
            "SELECT \(unescaped: Self.columns) FROM files WHERE id = \(id)", logger: logger)
        for try await row in rows { return try Self.record(row) }
        return nil
    }

    /// The upload token's hash and the announced checksum of a file still waiting for its content.
    public func pendingUpload(id: String, on database: some PostgresQueryable, logger: Logger) async throws
        -> (tokenHash: String, expectedSHA256: String?)?
    {
        let rows = try await database.run(
            "SELECT upload_token_hash, expected_sha256 FROM files WHERE id = \(id) AND upload_token_hash IS NOT NULL",
            logger: logger)
        for try await row in rows.decode((String, String?).self) { return (row.0, row.1) }
        return nil
    }

    /// Files, newest first.
    public func list(limit: Int, on database: some PostgresQueryable, logger: Logger) async throws -> [FileRecord] {
        let rows = try await database.run(
            "SELECT \(unescaped: Self.columns) FROM files ORDER BY created_at DESC, id LIMIT \(limit)", logger: logger)
        var records: [FileRecord] = []
        for try await row in rows { records.append(try Self.record(row)) }
        return records
    }

    /// Deletes the file and its content; false if there was none.
    public func delete(id: String, on database: some PostgresQueryable, logger: Logger) async throws -> Bool {
        let rows = try await database.run("DELETE FROM files WHERE id = \(id) RETURNING 1", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// The piece `sequence` of the file's content, or nil past its end.
    public func chunk(fileID: String, sequence: Int32, on database: some PostgresQueryable, logger: Logger) async throws -> ByteBuffer? {
        let rows = try await database.run(
            "SELECT data FROM file_chunks WHERE file_id = \(fileID) AND seq = \(sequence)", logger: logger)
        for try await data in rows.decode(ByteBuffer.self) { return data }
        return nil
    }

    static let columns = "id, filename, purpose, file_type, content_type, bytes, sha256, status, request_id, created_at"

    static func record(_ row: PostgresRow) throws -> FileRecord {
        let (id, filename, purpose, fileType, contentType, bytes, sha256, status, requestID, createdAt) = try row.decode(
            (String, String, String, String, String, Int64, String?, String, UUID?, Date).self)
        return FileRecord(
            id: id, filename: filename, purpose: purpose, fileType: fileType, contentType: contentType, bytes: bytes, sha256: sha256,
            isReady: status == "ready", requestID: requestID, createdAt: createdAt)
    }
}

/// Stores a file's content as it arrives: 1 MiB pieces, a running SHA-256, a size limit.
public final class FileContentWriter {
    let fileID: String
    let limit: Int64
    let connection: PostgresConnection
    let logger: Logger
    private var hasher = SHA256()
    private var total: Int64 = 0
    private var sequence: Int32 = 0
    private var pending = ByteBuffer()

    public init(fileID: String, limit: Int64, connection: PostgresConnection, logger: Logger) async throws {
        self.fileID = fileID
        self.limit = limit
        self.connection = connection
        self.logger = logger
        pending.reserveCapacity(FilesTable.chunkBytes)
        try await connection.run("DELETE FROM file_chunks WHERE file_id = \(fileID)", logger: logger)
    }

    public func append(_ buffer: ByteBuffer) async throws {
        var buffer = buffer
        total += Int64(buffer.readableBytes)
        guard total <= limit else { throw FileUploadError.tooLarge(limit: limit) }
        buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        while buffer.readableBytes > 0 {
            var slice = buffer.readSlice(length: min(buffer.readableBytes, FilesTable.chunkBytes - pending.readableBytes))!
            pending.writeBuffer(&slice)
            if pending.readableBytes == FilesTable.chunkBytes { try await flush() }
        }
    }

    public func append(_ bytes: [UInt8]) async throws {
        try await append(ByteBuffer(bytes: bytes))
    }

    private func flush() async throws {
        guard pending.readableBytes > 0 else { return }
        try await connection.run(
            "INSERT INTO file_chunks (file_id, seq, data) VALUES (\(fileID), \(sequence), \(pending))", logger: logger)
        sequence += 1
        pending.clear()
    }

    /// Stores the last piece, checks the checksum, and marks the file ready.
    public func finish(expectedSHA256: String?) async throws -> (bytes: Int64, sha256: String) {
        try await flush()
        let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
        if let expectedSHA256, expectedSHA256.lowercased() != digest {
            throw FileUploadError.checksumMismatch(expected: expectedSHA256, actual: digest)
        }
        try await connection.run(
            """
            UPDATE files SET bytes = \(total), sha256 = \(digest), status = 'ready', upload_token_hash = NULL
            WHERE id = \(fileID)
            """, logger: logger)
        return (total, digest)
    }
}
