import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PostgresNIO
import SpoolCore
import SpoolStore

/// Files: Together's upload (`POST /v1/files` → 302 → `PUT` → `preprocess`), a plain multipart
/// upload like OpenAI's, retrieve, list, content and delete; and the upload of a worker's file output.
struct FileRoutes: Sendable {
    let store: Store
    let configuration: BrokerConfiguration
    /// Uploads in progress per API key on this broker, capped.
    let uploads: UploadSlots

    static let purposes: Set<String> = ["batch-api", "batch", "fine-tune", "eval", "calibration", "user_data", "job-output"]

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        let files = router.group("v1/files")
        files.post(use: create)
        files.get(use: list)
        files.get(":id", use: retrieve)
        files.delete(":id", use: delete)
        files.get(":id/content", use: content)
        files.post(":id/preprocess", use: retrieve)
    }

    /// Workers' file outputs, with the worker protocol's routes.
    func registerWorkerUpload(on router: some RouterMethods<BrokerRequestContext>) {
        router.post("v1/worker/jobs/:request_id/files", use: workerUpload)
    }

    /// The PUT of content to the Location a create answered: authorized by the secret in that URL,
    /// since the together SDK sends no API key there (as to a presigned URL).
    func registerUpload(on router: some RouterMethods<BrokerRequestContext>) {
        router.put("v1/files/:id/upload", use: upload)
    }

    /// Multipart with a `file` part stores it now (200 and the file); without one it records the
    /// file and answers 302 with where to PUT the content (Together's flow).
    ///
    /// Nothing in the database waits on the client: the file part is stored a piece at a time in
    /// short statements and made ready in one short transaction at the end.
    @Sendable func create(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        guard var reader = MultipartReader(contentType: request.headers[.contentType]) else {
            throw SpoolError.invalidRequest(
                "Upload files as multipart/form-data with a 'purpose' field and a 'file' part (or no file part, then PUT the content to the Location answered).",
                code: "invalid_content_type")
        }
        if let length = request.headers[.contentLength].flatMap(Int64.init), length > configuration.maxFileBytes + 64 << 10 {
            throw Self.tooLarge(configuration.maxFileBytes)
        }
        let slot = try uploads.acquire(for: context.caller.id)
        defer { slot.release() }
        let id = FilesTable.newID()
        let caller = context.caller.id
        let tenant = context.caller.ownTenant
        let logger = context.logger
        var fields: [String: String] = [:]
        var current: (name: String?, filename: String?) = (nil, nil)
        var fieldBytes: [UInt8] = []
        var upload: FileUpload?
        var stored: (filename: String, contentType: String)?
        var parts = 0
        func endField() throws(SpoolError) {
            if let name = current.name, current.filename == nil {
                fields[name] = try ClientText.validated(fieldBytes, field: name, maxBytes: 64 << 10)
            }
            fieldBytes = []
        }
        do {
            for try await piece in request.body {
                for event in try reader.feed(piece) {
                    switch event {
                    case .part(let headers):
                        try endField()
                        parts += 1
                        guard parts <= 64 else { throw MultipartReader.malformed("it has more than 64 parts") }
                        current = MultipartReader.disposition(headers)
                        if current.name == "file" {
                            guard upload == nil else { throw SpoolError.invalidRequest("Send one 'file' part.", code: "invalid_multipart") }
                            let filename = try ClientText.validated(current.filename ?? "upload", field: "filename", maxBytes: 1024)
                            let contentType = try ClientText.validated(
                                headers["content-type"] ?? "application/octet-stream", field: "content-type", maxBytes: 255)
                            let holder = UUID()
                            try await store.files.create(
                                id: id, filename: filename, purpose: "batch-api", fileType: Self.fileType(filename: filename, declared: nil),
                                contentType: contentType, expectedSHA256: nil, uploadTokenHash: nil, owner: caller, tenant: tenant, holder: holder,
                                on: store.client, logger: logger)
                            upload = FileUpload(fileID: id, holder: holder, limit: configuration.maxFileBytes, database: store.client, logger: logger)
                            stored = (filename, contentType)
                        }
                    case .data(let bytes):
                        if current.name == "file", let upload {
                            try await upload.append(bytes)
                        } else if current.filename == nil {
                            fieldBytes.append(contentsOf: bytes.readableBytesView)
                            guard fieldBytes.count <= 64 << 10 else { throw MultipartReader.malformed("a form field is longer than 64 KiB") }
                        }
                    }
                }
            }
            try endField()
            guard reader.isFinished else { throw MultipartReader.malformed("it ends before its closing boundary") }
            let purpose = try Self.purpose(fields["purpose"])
            let declaredType = try Self.declaredFileType(fields["file_type"])
            let checksum = fields["checksum"].flatMap { $0.isEmpty ? nil : $0 }
            if let upload, let stored {
                // A plain multipart upload: the content is here.
                let (bytes, sha256) = try await Self.refusingUploadErrors(limit: configuration.maxFileBytes) {
                    try await upload.end(expectedBytes: nil, expectedSHA256: checksum)
                }
                let description: FileDescription = (
                    filename: fields["file_name"] ?? stored.filename, purpose: purpose,
                    fileType: Self.fileType(filename: stored.filename, declared: declaredType)
                )
                guard
                    case .finished(let record) = try await store.files.finishUpload(
                        fileID: id, holder: upload.holder, bytes: bytes, sha256: sha256, description: description, lease: nil,
                        on: store.client, logger: logger)
                else { throw SpoolError.notFound("The file was deleted while it was uploaded.", code: "file_not_found") }
                return JSONResponse.make(Self.view(record), status: .ok)
            }
            // Together's flow: the content comes in a PUT to the Location, authorized by its token.
            let filename = fields["file_name"].flatMap { $0.isEmpty ? nil : $0 } ?? "upload.jsonl"
            let token = Self.newToken()
            try await store.files.create(
                id: id, filename: filename, purpose: purpose, fileType: Self.fileType(filename: filename, declared: declaredType),
                contentType: "application/octet-stream", expectedSHA256: checksum, uploadTokenHash: APIKeyHash.of(token), owner: caller,
                tenant: tenant, on: store.client, logger: logger)
            var headers = HTTPFields()
            headers[.location] = "\(configuration.publicRoot(request))/v1/files/\(id)/upload?token=\(token)"
            headers[.togetherFileID] = id
            return try JSONResponse.make(
                encoding: ["id": JSONValue.string(id), "upload_url": .string(headers[.location]!)], status: .found, headers: headers)
        } catch {
            if let upload {
                try? await store.files.abandonUpload(fileID: id, holder: upload.holder, keepFile: false, on: store.client, logger: logger)
            }
            throw error
        }
    }

    /// Stores the content of a file created without it; the file becomes ready (200), or on a
    /// checksum mismatch, an oversized or cut-off body stays waiting for a good upload.
    @Sendable func upload(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let id = try Self.fileID(context)
        let token = request.uri.queryParameters["token"].map(String.init) ?? ""
        let expectedBytes = try Self.contentLength(request)
        if let expectedBytes, expectedBytes > configuration.maxFileBytes {
            throw Self.tooLarge(configuration.maxFileBytes)
        }
        let holder = UUID()
        let logger = context.logger
        let expectedSHA256: String?
        let owner: String?
        switch try await store.files.beginUpload(
            // The token is the authority here (the PUT carries no key): it was handed to its tenant only.
            id: id, tokenHash: APIKeyHash.of(token), tenant: nil, holder: holder, idleSeconds: 2 * configuration.idleTimeoutSeconds, on: store.client,
            logger: logger)
        {
        case .started(let checksum, let creator):
            expectedSHA256 = checksum
            owner = creator
        case .notWaiting:
            throw SpoolError.notFound(
                "No upload is waiting at this URL: the file is unknown, already uploaded, or the token is wrong.", code: "upload_not_found")
        case .busy:
            throw SpoolError.conflict(
                "Another upload of this file is under way; wait for it to end, or retry once it has been idle for \(Int(2 * configuration.idleTimeoutSeconds)) s.",
                code: "upload_in_progress")
        }
        let upload = FileUpload(fileID: id, holder: holder, limit: configuration.maxFileBytes, database: store.client, logger: logger)
        do {
            // The PUT carries no API key: it counts against the key that created the file.
            let slot = try uploads.acquire(for: owner ?? "anonymous")
            defer { slot.release() }
            let (bytes, sha256) = try await Self.refusingUploadErrors(limit: configuration.maxFileBytes) {
                for try await piece in request.body { try await upload.append(piece) }
                return try await upload.end(expectedBytes: expectedBytes, expectedSHA256: expectedSHA256)
            }
            switch try await store.files.finishUpload(
                fileID: id, holder: holder, bytes: bytes, sha256: sha256, description: nil, lease: nil, on: store.client, logger: logger)
            {
            case .finished(let record): return JSONResponse.make(Self.view(record))
            case .replaced, .refused:
                throw SpoolError.notFound("The file's content was uploaded meanwhile; this URL is spent.", code: "upload_not_found")
            }
        } catch {
            try? await store.files.abandonUpload(fileID: id, holder: holder, keepFile: true, on: store.client, logger: logger)
            throw error
        }
    }

    @Sendable func retrieve(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        JSONResponse.make(Self.view(try await find(context)))
    }

    @Sendable func list(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let limit = try Self.limit(request)
        let records = try await store.files.list(limit: limit, tenant: context.caller.readableTenant, on: store.client, logger: context.logger)
        return JSONResponse.make(["object": "list", "data": JSONValue.array(records.map(Self.view))] as JSONValue)
    }

    @Sendable func delete(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let id = try Self.fileID(context)
        guard try await store.files.delete(id: id, tenant: context.caller.readableTenant, on: store.client, logger: context.logger) else {
            throw Self.notFound(id)
        }
        return JSONResponse.make(["id": .string(id), "object": "file", "deleted": true] as JSONValue)
    }

    /// The content, streamed a stored piece at a time.
    @Sendable func content(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let record = try await find(context)
        guard record.isReady else {
            throw SpoolError.conflict("File '\(record.id)' has no content yet: its upload has not finished.", code: "file_not_ready", param: "id")
        }
        let store = self.store
        let logger = context.logger
        var headers = HTTPFields()
        headers[.contentType] = record.contentType
        headers[.contentDisposition] = "attachment; filename=\"\(record.filename.replacingOccurrences(of: "\"", with: ""))\""
        let body = ResponseBody(contentLength: Int(record.bytes)) { writer in
            var sequence: Int32 = 0
            while let piece = try await store.files.chunk(fileID: record.id, sequence: sequence, on: store.client, logger: logger) {
                try await writer.write(piece)
                sequence += 1
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    /// A worker's file output, streamed into the files store; fenced by the lease like every worker
    /// write, at its start and again when the file is made ready.
    @Sendable func workerUpload(_ request: Request, context: BrokerRequestContext) async throws -> Response {
        let parameters = request.uri.queryParameters
        guard let requestText = context.parameters.get("request_id"), let requestID = UUID(uuidString: requestText) else {
            throw SpoolError.notFound("No such job.", code: "job_not_found", param: "request_id")
        }
        guard let token = parameters["lease_token"].flatMap({ UUID(uuidString: String($0)) }) else {
            throw SpoolError.invalidRequest("'lease_token' (a UUID) is required in the query.", code: "missing_field", param: "lease_token")
        }
        try await context.caller.requireModel(ofJob: requestID, store: store, logger: context.logger)
        let name = try ClientText.validated(parameters["name"].map(String.init) ?? "output", field: "name", maxBytes: 255)
        guard !name.isEmpty, !name.contains("/") else {
            throw SpoolError.invalidRequest("'name' must be a file name of at most 255 bytes without '/'.", code: "invalid_field", param: "name")
        }
        let contentType = try ClientText.validated(
            request.headers[.contentType] ?? "application/octet-stream", field: "Content-Type", maxBytes: 255)
        let expectedSHA256 = try parameters["sha256"].map { try ClientText.validated(String($0), field: "sha256", maxBytes: 128) }
        if let refusal = try await store.jobs.checkLease(requestID: requestID, leaseToken: token, on: store.client, logger: context.logger) {
            throw WorkerRoutes.error(for: refusal, requestID: requestID)
        }
        let expectedBytes = try Self.contentLength(request)
        if let expectedBytes, expectedBytes > configuration.maxFileBytes {
            throw Self.tooLarge(configuration.maxFileBytes)
        }
        let slot = try uploads.acquire(for: context.caller.id)
        defer { slot.release() }
        let id = FilesTable.newID()
        let logger = context.logger
        let holder = UUID()
        let url = "\(configuration.publicRoot(request))/v1/files/\(id)/content"
        try await store.files.create(
            id: id, filename: name, purpose: "job-output", fileType: "binary", contentType: contentType, expectedSHA256: nil,
            uploadTokenHash: nil, owner: context.caller.id, tenant: context.caller.ownTenant, requestID: requestID, holder: holder,
            on: store.client, logger: logger)
        let upload = FileUpload(fileID: id, holder: holder, limit: configuration.maxFileBytes, database: store.client, logger: logger)
        do {
            let (bytes, sha256) = try await Self.refusingUploadErrors(limit: configuration.maxFileBytes) {
                for try await piece in request.body { try await upload.append(piece) }
                return try await upload.end(expectedBytes: expectedBytes, expectedSHA256: expectedSHA256)
            }
            switch try await store.files.finishUpload(
                fileID: id, holder: holder, bytes: bytes, sha256: sha256, description: nil, lease: (requestID, token), on: store.client,
                logger: logger)
            {
            case .finished:
                let output: JSONValue = [
                    "file_id": .string(id), "file_name": .string(name), "file_size": .int(bytes), "content_type": .string(contentType),
                    "url": .string(url), "sha256": .string(sha256),
                ]
                return JSONResponse.make(output, status: .created)
            case .refused(let refusal):
                throw WorkerRoutes.error(for: refusal, requestID: requestID)
            case .replaced:
                throw SpoolError.notFound("The file was deleted while it was uploaded.", code: "file_not_found")
            }
        } catch {
            try? await store.files.abandonUpload(fileID: id, holder: holder, keepFile: false, on: store.client, logger: logger)
            throw error
        }
    }

    /// The body's announced length, so a body cut short by a client that went away is not taken for a whole file.
    static func contentLength(_ request: Request) throws(SpoolError) -> Int64? {
        guard let text = request.headers[.contentLength] else { return nil }
        guard let length = Int64(text), length >= 0 else {
            throw .invalidRequest("The Content-Length header is not a length.", code: "invalid_header", param: "Content-Length")
        }
        return length
    }

    private func find(_ context: BrokerRequestContext) async throws -> FileRecord {
        let id = try Self.fileID(context)
        guard let record = try await store.files.find(id: id, tenant: context.caller.readableTenant, on: store.client, logger: context.logger) else {
            throw Self.notFound(id)
        }
        return record
    }

    /// A file in Together's `FileResponse` shape (and OpenAI's `file` object).
    static func view(_ record: FileRecord) -> JSONValue {
        [
            "id": .string(record.id), "object": "file", "bytes": .int(record.bytes),
            "created_at": .int(Int64(record.createdAt.timeIntervalSince1970)),
            "filename": .string(record.filename), "purpose": .string(record.purpose), "FileType": .string(record.fileType),
            "content_type": .string(record.contentType), "processing_status": .string(record.isReady ? "COMPLETED" : "PENDING"),
            "status": .string(record.isReady ? "processed" : "uploaded"), "sha256": record.sha256.map(JSONValue.string) ?? .null,
            "request_id": record.requestID.map { .string($0.uuidString.lowercased()) } ?? .null,
        ]
    }

    /// Maps an upload's refusals to clear errors; the upload they end is abandoned, nothing kept.
    static func refusingUploadErrors<Result>(limit: Int64, _ body: () async throws -> Result) async throws -> Result {
        do {
            return try await body()
        } catch FileUploadError.tooLarge {
            throw tooLarge(limit)
        } catch FileUploadError.checksumMismatch(let expected, let actual) {
            throw SpoolError.invalidRequest(
                "The content's SHA-256 is \(actual), not the checksum \(expected) sent with the upload; nothing was stored. Upload it again.",
                code: "checksum_mismatch", param: "checksum")
        } catch FileUploadError.truncated(let expected, let received) {
            throw SpoolError.invalidRequest(
                "The body ended after \(received) of its \(expected) bytes; nothing was stored. Upload it again.", code: "upload_truncated")
        } catch FileUploadError.replaced {
            throw SpoolError.conflict(
                "This upload was idle so long that another one took the file over; nothing of it was kept.", code: "upload_replaced")
        }
    }

    static func tooLarge(_ limit: Int64) -> SpoolError {
        .payloadTooLarge(limit: Int(limit), what: "file")
    }

    static func purpose(_ value: String?) throws(SpoolError) -> String {
        guard let value, !value.isEmpty else {
            throw .invalidRequest("'purpose' is required (for batches: 'batch-api').", code: "missing_field", param: "purpose")
        }
        guard purposes.contains(value) else {
            throw .invalidRequest(
                "'purpose' must be one of \(purposes.sorted().joined(separator: ", ")); got '\(value)'.", code: "invalid_field", param: "purpose")
        }
        return value
    }

    static let fileTypes: Set<String> = ["jsonl", "csv", "parquet"]

    /// The `file_type` field: absent, or one of `fileTypes` (anything else is refused, nothing stored).
    static func declaredFileType(_ value: String?) throws(SpoolError) -> String? {
        guard let value else { return nil }
        guard fileTypes.contains(value) else {
            throw .invalidRequest(
                "'file_type' must be one of \(fileTypes.sorted().joined(separator: ", ")); got '\(value)'. Nothing was stored.",
                code: "invalid_field",
                param: "file_type")
        }
        return value
    }

    static func fileType(filename: String, declared: String?) -> String {
        if let declared, fileTypes.contains(declared) { return declared }
        let lower = filename.lowercased()
        for type in ["csv", "parquet"] where lower.hasSuffix(".\(type)") { return type }
        return "jsonl"
    }

    static func limit(_ request: Request) throws(SpoolError) -> Int {
        guard let text = request.uri.queryParameters["limit"] else { return 100 }
        guard let limit = Int(text), (1...1000).contains(limit) else {
            throw .invalidRequest("'limit' must be an integer from 1 to 1000.", code: "invalid_field", param: "limit")
        }
        return limit
    }

    static func fileID(_ context: BrokerRequestContext) throws(SpoolError) -> String {
        guard let id = context.parameters.get("id"), !id.isEmpty, id.utf8.count <= 128 else {
            throw .notFound("No such file.", code: "file_not_found", param: "id")
        }
        return id
    }

    static func notFound(_ id: String) -> SpoolError {
        .notFound("No file '\(id)' on this broker.", code: "file_not_found", param: "id")
    }

    static func newToken() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) }.lowercaseHex
    }
}
