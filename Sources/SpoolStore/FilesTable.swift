import Crypto
import Foundation
import Logging
import NIOCore
import PostgresNIO
import SpoolCore

/// A stored file's metadata.
package struct FileRecord: Sendable, Equatable {
    package var id: String
    package var filename: String
    package var purpose: String
    package var fileType: String
    package var contentType: String
    package var bytes: Int64
    package var sha256: String?
    package var isReady: Bool
    package var requestID: UUID?
    package var createdAt: Date
}

/// What a PUT of a file's content found.
package enum UploadStart: Sendable, Equatable {
    /// This upload holds the file now; the content's announced checksum, if any, and who created the file.
    case started(expectedSHA256: String?, owner: String?)
    /// The file is unknown, already uploaded, or the token is wrong.
    case notWaiting
    /// Another upload of the file is under way.
    case busy
}

/// How an upload's last step went.
package enum UploadFinish: Sendable, Equatable {
    case finished(FileRecord)
    /// A newer upload replaced this one (it was idle too long), or the file was deleted.
    case replaced
    /// The worker's lease no longer holds its job.
    case refused(LeaseRefusal)
}

/// What a multipart upload's form fields say about its file.
package typealias FileDescription = (filename: String, purpose: String, fileType: String)

/// What a streamed upload ended with.
package enum FileUploadError: Error, Sendable, Equatable {
    /// The content passed the size limit; nothing was kept.
    case tooLarge(limit: Int64)
    /// The content's SHA-256 is not the checksum the client announced; nothing was kept.
    case checksumMismatch(expected: String, actual: String)
    /// The body ended before its announced length: the client went away mid-upload.
    case truncated(expected: Int64, received: Int64)
    /// Another upload took the file over while this one was idle (or the file was deleted).
    case replaced
}

/// The `files` and `file_chunks` tables: metadata, and content in 1 MiB pieces.
package struct FilesTable: TenantRecordsTable {
    package static let tableName = "files"
    package typealias ID = String
    package init() {}

    /// The size of each stored piece: what an upload or a download holds in memory at a time.
    package static let chunkBytes = 1 << 20

    package static func newID() -> String { "file-" + UUID().uuidString.lowercased() }

    /// Records a file whose content is still to come: Together's upload (metadata first, then a
    /// PUT, with no holder yet), or an upload under way now, held by `holder`.
    package func create(
        id: String, filename: String, purpose: String, fileType: String, contentType: String, expectedSHA256: String?,
        uploadTokenHash: String?, owner: String, tenant: String, requestID: UUID? = nil, holder: UUID? = nil,
        on database: some PostgresQueryable,
        logger: Logger
    ) async throws {
        try await database.run(
            """
            INSERT INTO files (id, filename, purpose, file_type, content_type, expected_sha256, upload_token_hash, owner, request_id,
                               upload_holder, upload_active_at, tenant)
            VALUES (\(id), \(filename), \(purpose), \(fileType), \(contentType), \(expectedSHA256), \(uploadTokenHash), \(owner),
                    \(requestID), \(holder), CASE WHEN \(holder)::uuid IS NOT NULL THEN now() END,
                    -- A job's output file is the job's tenant's, whoever uploads it.
                    coalesce((SELECT tenant FROM jobs WHERE request_id = \(requestID)), \(tenant)))
            """, logger: logger)
    }

    /// Makes `holder` the upload of a file waiting for its content (Together's PUT), if `tokenHash`
    /// is its upload token's; an earlier upload still active keeps it (`.busy`), one idle longer
    /// than `idleSeconds` has died and is replaced, its pieces dropped.
    package func beginUpload(
        id: String, tokenHash: String, tenant: String?, holder: UUID, idleSeconds: Double, on client: PostgresClient, logger: Logger
    ) async throws -> UploadStart {
        try await client.transaction(logger: logger) { connection in
            let rows = try await connection.run(
                """
                UPDATE files SET upload_holder = \(holder), upload_active_at = now()
                WHERE id = \(id) AND status = 'uploading' AND upload_token_hash = \(tokenHash)
                  AND (\(tenant)::text IS NULL OR tenant = \(tenant))
                  AND (upload_holder IS NULL OR upload_active_at < now() - make_interval(secs => \(idleSeconds)))
                RETURNING expected_sha256, owner
                """, logger: logger
            ).collect()
            if let row = rows.first {
                // What a dead holder left behind; its late pieces are fenced out by the new holder.
                try await connection.run("DELETE FROM file_chunks WHERE file_id = \(id)", logger: logger)
                let (checksum, owner) = try row.decode((String?, String?).self)
                return .started(expectedSHA256: checksum, owner: owner)
            }
            let waiting = try await connection.run(
                """
                SELECT 1 FROM files WHERE id = \(id) AND status = 'uploading' AND upload_token_hash = \(tokenHash)
                                      AND (\(tenant)::text IS NULL OR tenant = \(tenant))
                """, logger: logger
            ).collect()
            return waiting.isEmpty ? .notWaiting : .busy
        }
    }

    /// Stores one piece of an upload, if `holder` still holds the file; false when it does not
    /// (a newer upload replaced it, or the file was deleted). One short statement: no connection
    /// or transaction is held while the next piece arrives from the client.
    package func storePiece(
        fileID: String, holder: UUID, sequence: Int32, data: ByteBuffer, on database: some PostgresQueryable, logger: Logger
    ) async throws -> Bool {
        let rows = try await database.run(
            """
            WITH held AS (
                -- Also marks the upload active; a replacing upload waits for this row lock, then finds it fresh.
                UPDATE files SET upload_active_at = now() WHERE id = \(fileID) AND upload_holder = \(holder) RETURNING id
            )
            INSERT INTO file_chunks (file_id, seq, data) SELECT id, \(sequence), \(data) FROM held
            RETURNING 1
            """, logger: logger)
        return try await !rows.collect().isEmpty
    }

    /// Makes a held upload's file ready in one short transaction, with what its fields said
    /// (`description`) and, for a worker's output, only while `lease` still holds its job. Returns
    /// the file, or why it could not finish.
    package func finishUpload(
        fileID: String, holder: UUID, bytes: Int64, sha256: String, description: FileDescription?, lease: (requestID: UUID, token: UUID)?,
        on client: PostgresClient, logger: Logger
    ) async throws -> UploadFinish {
        try await client.transaction(logger: logger) { connection in
            if let lease {
                // Fenced at its end as at its start: a worker that lost its lease meanwhile stores nothing.
                if let refusal = try await JobsTable().checkLease(
                    requestID: lease.requestID, leaseToken: lease.token, locking: true, on: connection, logger: logger)
                {
                    return .refused(refusal)
                }
            }
            let rows = try await connection.run(
                """
                UPDATE files SET status = 'ready', bytes = \(bytes), sha256 = \(sha256), upload_token_hash = NULL,
                                 upload_holder = NULL, upload_active_at = NULL,
                                 filename = coalesce(\(description?.filename)::text, filename),
                                 purpose = coalesce(\(description?.purpose)::text, purpose),
                                 file_type = coalesce(\(description?.fileType)::text, file_type)
                WHERE id = \(fileID) AND upload_holder = \(holder) AND status = 'uploading'
                RETURNING \(unescaped: Self.columns)
                """, logger: logger
            ).collect()
            guard let row = rows.first else { return .replaced }
            return .finished(try Self.record(row))
        }
    }

    /// Ends an upload that will not finish: a new file goes away with its pieces; a file waiting
    /// for its content (Together's PUT) drops the pieces and waits for a good upload.
    package func abandonUpload(fileID: String, holder: UUID, keepFile: Bool, on database: some PostgresQueryable, logger: Logger) async throws {
        if keepFile {
            try await database.run(
                """
                WITH released AS (
                    UPDATE files SET upload_holder = NULL, upload_active_at = NULL
                    WHERE id = \(fileID) AND upload_holder = \(holder) RETURNING id
                )
                DELETE FROM file_chunks WHERE file_id IN (SELECT id FROM released)
                """, logger: logger)
        } else {
            try await database.run(
                "DELETE FROM files WHERE id = \(fileID) AND upload_holder = \(holder) AND status = 'uploading'", logger: logger)
        }
    }

    /// Whether the file is ready, holding it for this transaction: a delete waits until the reader is done.
    package func holdForReading(id: String, on connection: PostgresConnection, logger: Logger) async throws -> Bool {
        let rows = try await connection.run("SELECT status FROM files WHERE id = \(id) FOR SHARE", logger: logger).collect()
        return try rows.first?.decode(String.self) == "ready"
    }

    /// Deletes up to `batchSize` uploads that never finished within `olderThanSeconds` (and are not
    /// under way: no holder active in the last `idleSeconds`), with what they stored; returns how many.
    package func pruneAbandonedUploads(
        olderThanSeconds: Double, idleSeconds: Double, batchSize: Int, now: Date? = nil, on database: some PostgresQueryable,
        logger: Logger
    ) async throws -> Int {
        let rows = try await database.run(
            """
            WITH abandoned AS (
                SELECT id FROM files
                WHERE status = 'uploading' AND created_at < \(secondsAgo: olderThanSeconds, clock: now)
                  AND (upload_holder IS NULL OR upload_active_at < \(secondsAgo: idleSeconds, clock: now))
                ORDER BY created_at LIMIT \(batchSize)
                FOR UPDATE SKIP LOCKED
            ), pruned AS (
                DELETE FROM files WHERE id = ANY (ARRAY(SELECT id FROM abandoned)) RETURNING 1
            )
            SELECT count(*) FROM pruned
            """, logger: logger)
        return try await rows.collect().first?.decode(Int.self) ?? 0
    }

    /// Deletes the file and its content, if it is `tenant`'s (nil: any tenant's); false if there was none.
    package func delete(id: String, tenant: String?, on database: some PostgresQueryable, logger: Logger) async throws -> Bool {
        let rows = try await database.run(
            "DELETE FROM files WHERE id = \(id) AND (\(tenant)::text IS NULL OR tenant = \(tenant)) RETURNING 1", logger: logger)
        for try await _ in rows { return true }
        return false
    }

    /// The piece `sequence` of the file's content, or nil past its end.
    package func chunk(fileID: String, sequence: Int32, on database: some PostgresQueryable, logger: Logger) async throws -> ByteBuffer? {
        let rows = try await database.run(
            "SELECT data FROM file_chunks WHERE file_id = \(fileID) AND seq = \(sequence)", logger: logger)
        for try await data in rows.decode(ByteBuffer.self) { return data }
        return nil
    }

    package static let columns = "id, filename, purpose, file_type, content_type, bytes, sha256, status, request_id, created_at"

    package static func record(_ row: PostgresRow) throws -> FileRecord {
        let (id, filename, purpose, fileType, contentType, bytes, sha256, status, requestID, createdAt) = try row.decode(
            (String, String, String, String, String, Int64, String?, String, UUID?, Date).self)
        return FileRecord(
            id: id, filename: filename, purpose: purpose, fileType: fileType, contentType: contentType, bytes: bytes, sha256: sha256,
            isReady: status == "ready", requestID: requestID, createdAt: createdAt)
    }
}

/// Content cut into the store's pieces as it arrives, with a running SHA-256 and a size limit:
/// what every writer of a file's content shares; each stores a finished piece its own way.
struct ContentPieces {
    let limit: Int64
    private var hasher = SHA256()
    private(set) var total: Int64 = 0
    private(set) var sequence: Int32 = 0
    private var pending = ByteBuffer()

    init(limit: Int64) {
        self.limit = limit
        pending.reserveCapacity(FilesTable.chunkBytes)
    }

    /// Adds `buffer`, handing each piece it fills to `store` (with its sequence number).
    mutating func append(_ buffer: ByteBuffer, store: (Int32, ByteBuffer) async throws -> Void) async throws {
        var buffer = buffer
        total += Int64(buffer.readableBytes)
        guard total <= limit else { throw FileUploadError.tooLarge(limit: limit) }
        buffer.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
        while buffer.readableBytes > 0 {
            var slice = buffer.readSlice(length: min(buffer.readableBytes, FilesTable.chunkBytes - pending.readableBytes))!
            pending.writeBuffer(&slice)
            if pending.readableBytes == FilesTable.chunkBytes { try await flush(store) }
        }
    }

    /// Hands the last, partial piece to `store` and returns the content's SHA-256, checked against
    /// `expectedSHA256` when one was announced.
    mutating func finish(expectedSHA256: String?, store: (Int32, ByteBuffer) async throws -> Void) async throws -> String {
        try await flush(store)
        let digest = hasher.finalize().lowercaseHex
        if let expectedSHA256, expectedSHA256.lowercased() != digest {
            throw FileUploadError.checksumMismatch(expected: expectedSHA256, actual: digest)
        }
        return digest
    }

    private mutating func flush(_ store: (Int32, ByteBuffer) async throws -> Void) async throws {
        guard pending.readableBytes > 0 else { return }
        try await store(sequence, pending)
        sequence += 1
        pending.clear()
    }
}

/// Writes a file's content inside the caller's transaction (the batch runner's output files): a
/// failure leaves nothing behind.
package final class FileContentWriter {
    let fileID: String
    let connection: PostgresConnection
    let logger: Logger
    private var pieces: ContentPieces

    package init(fileID: String, limit: Int64, connection: PostgresConnection, logger: Logger) async throws {
        self.fileID = fileID
        self.connection = connection
        self.logger = logger
        self.pieces = ContentPieces(limit: limit)
        try await connection.run("DELETE FROM file_chunks WHERE file_id = \(fileID)", logger: logger)
    }

    package func append(_ buffer: ByteBuffer) async throws {
        try await pieces.append(buffer, store: storePiece)
    }

    package func append(_ bytes: [UInt8]) async throws {
        try await append(ByteBuffer(bytes: bytes))
    }

    private func storePiece(_ sequence: Int32, _ data: ByteBuffer) async throws {
        try await connection.run("INSERT INTO file_chunks (file_id, seq, data) VALUES (\(fileID), \(sequence), \(data))", logger: logger)
    }

    /// Stores the last piece, checks the checksum, and marks the file ready.
    package func finish(expectedSHA256: String?) async throws -> (bytes: Int64, sha256: String) {
        let digest = try await pieces.finish(expectedSHA256: expectedSHA256, store: storePiece)
        try await connection.run(
            """
            UPDATE files SET bytes = \(pieces.total), sha256 = \(digest), status = 'ready', upload_token_hash = NULL
            WHERE id = \(fileID)
            """, logger: logger)
        return (pieces.total, digest)
    }
}

/// A client's upload as it arrives: hashed, held to a size limit, and stored a piece at a time,
/// each in its own short statement, so nothing in the database waits on the client between pieces.
package final class FileUpload {
    package let fileID: String
    package let holder: UUID
    let database: PostgresClient
    let logger: Logger
    private var pieces: ContentPieces

    package init(fileID: String, holder: UUID, limit: Int64, database: PostgresClient, logger: Logger) {
        self.fileID = fileID
        self.holder = holder
        self.database = database
        self.logger = logger
        self.pieces = ContentPieces(limit: limit)
    }

    /// Bytes received so far.
    package var receivedBytes: Int64 { pieces.total }

    package func append(_ buffer: ByteBuffer) async throws {
        try await pieces.append(buffer, store: storePiece)
    }

    private func storePiece(_ sequence: Int32, _ data: ByteBuffer) async throws {
        guard try await FilesTable().storePiece(fileID: fileID, holder: holder, sequence: sequence, data: data, on: database, logger: logger)
        else { throw FileUploadError.replaced }
    }

    /// Stores the last piece and checks the size (`expectedBytes`, a Content-Length) and the
    /// checksum; the file is made ready by ``FilesTable/finishUpload``.
    package func end(expectedBytes: Int64?, expectedSHA256: String?) async throws -> (bytes: Int64, sha256: String) {
        if let expectedBytes, expectedBytes != pieces.total {
            throw FileUploadError.truncated(expected: expectedBytes, received: pieces.total)
        }
        let digest = try await pieces.finish(expectedSHA256: expectedSHA256, store: storePiece)
        return (pieces.total, digest)
    }
}
