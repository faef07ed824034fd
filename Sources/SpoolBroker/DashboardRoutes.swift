import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SpoolCore

/// The web dashboard at `/ui`: three static files carried in the binary (Sources/SpoolBroker/UI),
/// served without a key. The page holds no data: every call it makes goes through the
/// authenticated API with the key its user typed.
struct DashboardRoutes: Sendable {
    /// A directory to serve the files from instead, read on every request: for working on the page
    /// without rebuilding (`SPOOL_UI_DIRECTORY`).
    let directory: String?

    struct Asset: Sendable {
        let name: String
        let contentType: String
        let bytes: [UInt8]
        let etag: String

        init(name: String, contentType: String, bytes: [UInt8]) {
            self.name = name
            self.contentType = contentType
            self.bytes = bytes
            self.etag = DashboardRoutes.etag(bytes)
        }
    }

    static let assets: [String: Asset] = [
        "index.html": Asset(name: "index.html", contentType: "text/html; charset=utf-8", bytes: PackageResources.index_html),
        "app.js": Asset(name: "app.js", contentType: "text/javascript; charset=utf-8", bytes: PackageResources.app_js),
        "app.css": Asset(name: "app.css", contentType: "text/css; charset=utf-8", bytes: PackageResources.app_css),
    ]

    /// Nothing but the broker's own files and API; no framing (clickjacking), no inline script.
    static let contentSecurityPolicy =
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    func register(on router: some RouterMethods<BrokerRequestContext>) {
        router.get("ui") { request, _ in try serve("index.html", request) }
        router.get("ui/:file") { request, context in try serve(context.parameters.get("file") ?? "", request) }
    }

    func serve(_ name: String, _ request: Request) throws -> Response {
        guard let asset = Self.assets[name] else {
            throw SpoolError.notFound("No dashboard file '\(name)'.", code: "not_found")
        }
        var bytes = asset.bytes
        var etag = asset.etag
        if let directory, let data = FileManager.default.contents(atPath: directory + "/" + asset.name) {
            bytes = Array(data)
            etag = Self.etag(bytes)
        }
        let headers: HTTPFields = [
            .contentType: asset.contentType, .cacheControl: "no-cache", .eTag: etag,
            .contentSecurityPolicy: Self.contentSecurityPolicy, .xContentTypeOptions: "nosniff", .referrerPolicy: "no-referrer",
            .xFrameOptions: "DENY",
        ]
        if request.headers[.ifNoneMatch] == etag {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// FNV-1a of the bytes, quoted: an ETag, so a reload revalidates instead of downloading again.
    static func etag(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return "\"\(String(hash, radix: 16))\""
    }
}
