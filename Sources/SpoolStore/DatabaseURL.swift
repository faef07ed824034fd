import Foundation
import NIOSSL
import PostgresNIO

/// A `postgres://user:password@host:port/database?sslmode=…` URL, turned into a client configuration.
///
/// `sslmode` follows libpq: `disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`
/// (with `sslrootcert` for a CA file); `?host=/dir` selects a Unix socket directory, as libpq does.
public struct DatabaseURL: Sendable, CustomStringConvertible {
    public let configuration: PostgresClient.Configuration
    /// The URL with its password hidden, for logs.
    public let description: String

    public init(_ string: String) throws(SpoolStoreError) {
        guard let components = URLComponents(string: string),
            let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme)
        else {
            throw .invalidConfiguration("The database URL must look like postgres://user:password@host:5432/database, got '\(string)'.")
        }
        let query = Dictionary(
            (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        let username = components.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        let password = components.password.flatMap { $0.removingPercentEncoding }
        var database = String(components.path.drop(while: { $0 == "/" }))
        if database.isEmpty { database = username }
        let port = components.port ?? 5432

        if let socketDirectory = query["host"], socketDirectory.hasPrefix("/") {
            configuration = .init(
                unixSocketPath: "\(socketDirectory)/.s.PGSQL.\(port)", username: username, password: password, database: database)
        } else {
            guard let host = components.host, !host.isEmpty else {
                throw .invalidConfiguration("The database URL '\(string)' names no host.")
            }
            // libpq's meanings: prefer and require encrypt without checking the certificate;
            // verify-ca checks it against the trust store (`sslrootcert` adds a CA file); verify-full also checks the host name.
            var unverified = TLSConfiguration.makeClientConfiguration()
            unverified.certificateVerification = .none
            var verified = TLSConfiguration.makeClientConfiguration()
            if let rootCertificate = query["sslrootcert"], !rootCertificate.isEmpty {
                verified.additionalTrustRoots = [.file(rootCertificate)]
            }
            let tls: PostgresClient.Configuration.TLS
            switch query["sslmode"] ?? "prefer" {
            case "disable": tls = .disable
            case "allow", "prefer": tls = .prefer(unverified)
            case "require": tls = .require(unverified)
            case "verify-ca":
                verified.certificateVerification = .noHostnameVerification
                tls = .require(verified)
            case "verify-full": tls = .require(verified)
            case let mode:
                throw .invalidConfiguration(
                    "Unknown sslmode '\(mode)' in the database URL: use disable, prefer, require, verify-ca or verify-full.")
            }
            configuration = .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
        var shown = components
        if shown.password != nil { shown.password = "***" }
        description = shown.string ?? "postgres://…"
    }
}

/// Errors of the store that are not query failures: configuration and the embedded cluster.
public struct SpoolStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String

    public static func invalidConfiguration(_ message: String) -> SpoolStoreError { SpoolStoreError(description: message) }
    public static func embeddedCluster(_ message: String) -> SpoolStoreError { SpoolStoreError(description: message) }
    public static func migration(_ message: String) -> SpoolStoreError { SpoolStoreError(description: message) }
}
