import Foundation
import NIOSSL
import PostgresNIO

/// A `postgres://user:password@host:port/database?sslmode=…` URL, turned into a client configuration.
///
/// `sslmode` follows libpq: `disable`, `prefer` (the default), `require`, `verify-ca`, `verify-full`
/// (with `sslrootcert` for a CA file); `?host=/dir` selects a Unix socket directory, as libpq does.
/// As in libpq, several hosts may be named (`postgres://h1:5432,h2:5432/spool`) with
/// `target_session_attrs=read-write` (or `primary`): every new connection goes to the first host
/// that answers and is not a standby, so brokers follow a failover by themselves (``PrimaryRelay``).
package struct DatabaseURL: Sendable, CustomStringConvertible {
    /// One of the URL's servers.
    package struct Host: Sendable, Equatable, CustomStringConvertible {
        package let name: String
        package let port: Int
        package var description: String { name.contains(":") ? "[\(name)]:\(port)" : "\(name):\(port)" }
    }

    /// What a server must be to take connections: libpq's `target_session_attrs`.
    package enum SessionAttributes: String, Sendable {
        /// The first server that answers.
        case any
        /// The first that answers and accepts writes (not a standby, not `default_transaction_read_only`).
        case readWrite = "read-write"
        /// The first that answers and is not a standby.
        case primary
    }

    /// The servers, in the URL's order; one for a Unix socket.
    package let hosts: [Host]
    package let sessionAttributes: SessionAttributes
    package let username: String
    package let password: String?
    package let database: String
    let tls: PostgresClient.Configuration.TLS
    let connectionTLS: @Sendable () throws -> PostgresConnection.Configuration.TLS
    let socketPath: String?
    /// The URL with its password hidden, for logs.
    package let description: String

    /// Whether connections go through a ``PrimaryRelay``: several hosts, or a role to check.
    package var needsRelay: Bool { socketPath == nil && (hosts.count > 1 || sessionAttributes != .any) }

    /// The pool's configuration for a URL with one server and no role to check (see ``needsRelay``).
    package var configuration: PostgresClient.Configuration {
        if let socketPath {
            return .init(unixSocketPath: socketPath, username: username, password: password, database: database)
        }
        return .init(host: hosts[0].name, port: hosts[0].port, username: username, password: password, database: database, tls: tls)
    }

    /// The pool's configuration when it reaches the servers through a relay on this machine.
    /// TLS, if any, passes through the relay untouched, end to end with the server.
    func relayed(port: Int) -> PostgresClient.Configuration {
        .init(host: "127.0.0.1", port: port, username: username, password: password, database: database, tls: tls)
    }

    /// A direct connection's configuration for one of the servers, to ask what it is.
    func probe(_ host: Host) throws -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: host.name, port: host.port, username: username, password: password, database: database, tls: try connectionTLS())
        configuration.options.connectTimeout = .seconds(3)
        return configuration
    }

    package init(_ string: String) throws(SpoolStoreError) {
        // URLComponents takes one host: the list is cut out and read here, as libpq reads it.
        let (single, hostList) = Self.splitHosts(string)
        guard let components = URLComponents(string: single),
            let scheme = components.scheme, ["postgres", "postgresql"].contains(scheme)
        else {
            throw .invalidConfiguration(
                "The database URL must look like postgres://user:password@host:5432/database, got '\(Self.redacted(string))'.")
        }
        let query = Dictionary(
            (components.queryItems ?? []).map { ($0.name, $0.value ?? "") }, uniquingKeysWith: { _, last in last })
        username = components.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        password = components.password.flatMap { $0.removingPercentEncoding }
        var database = String(components.path.drop(while: { $0 == "/" }))
        if database.isEmpty { database = username }
        self.database = database
        let defaultPort = components.port ?? 5432
        guard let attributes = SessionAttributes(rawValue: query["target_session_attrs"] ?? "any") else {
            throw .invalidConfiguration(
                "Unknown target_session_attrs '\(query["target_session_attrs"] ?? "")' in the database URL: use any, read-write or primary.")
        }
        sessionAttributes = attributes

        if let socketDirectory = query["host"], socketDirectory.hasPrefix("/") {
            socketPath = "\(socketDirectory)/.s.PGSQL.\(defaultPort)"
            hosts = [Host(name: socketDirectory, port: defaultPort)]
            tls = .disable
            connectionTLS = { .disable }
        } else {
            socketPath = nil
            if let hostList {
                hosts = try Self.parseHosts(hostList, defaultPort: defaultPort)
            } else {
                guard let host = components.host, !host.isEmpty else {
                    throw .invalidConfiguration("The database URL '\(Self.redacted(string))' names no host.")
                }
                hosts = [Host(name: host, port: defaultPort)]
            }
            // libpq's meanings: prefer and require encrypt without checking the certificate;
            // verify-ca checks it against the trust store (`sslrootcert` adds a CA file); verify-full also checks the host name.
            var unverified = TLSConfiguration.makeClientConfiguration()
            unverified.certificateVerification = .none
            var verified = TLSConfiguration.makeClientConfiguration()
            if let rootCertificate = query["sslrootcert"], !rootCertificate.isEmpty {
                verified.additionalTrustRoots = [.file(rootCertificate)]
            }
            let mode = query["sslmode"] ?? "prefer"
            switch mode {
            case "disable":
                tls = .disable
                connectionTLS = { .disable }
            case "allow", "prefer":
                tls = .prefer(unverified)
                connectionTLS = { [unverified] in .prefer(try NIOSSLContext(configuration: unverified)) }
            case "require":
                tls = .require(unverified)
                connectionTLS = { [unverified] in .require(try NIOSSLContext(configuration: unverified)) }
            case "verify-ca":
                verified.certificateVerification = .noHostnameVerification
                tls = .require(verified)
                connectionTLS = { [verified] in .require(try NIOSSLContext(configuration: verified)) }
            case "verify-full":
                tls = .require(verified)
                connectionTLS = { [verified] in .require(try NIOSSLContext(configuration: verified)) }
            default:
                throw .invalidConfiguration(
                    "Unknown sslmode '\(mode)' in the database URL: use disable, prefer, require, verify-ca or verify-full.")
            }
            if mode == "verify-full" && (hosts.count > 1 || attributes != .any) {
                // The pool reaches the servers through 127.0.0.1, so it cannot check their names.
                throw .invalidConfiguration(
                    "sslmode=verify-full cannot be used with several hosts or target_session_attrs: use verify-ca with sslrootcert.")
            }
        }
        description = Self.redacted(string)
    }

    /// The URL with its list of hosts replaced by one (`hosts`), and that list if it had several.
    static func splitHosts(_ string: String) -> (single: String, hosts: String?) {
        guard let schemeEnd = string.range(of: "://") else { return (string, nil) }
        let rest = string[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let at = authority.lastIndex(of: "@")
        let hostPart = at.map { authority[authority.index(after: $0)...] } ?? authority
        guard hostPart.contains(",") else { return (string, nil) }
        let userInfo = at.map { String(authority[...$0]) } ?? ""
        return (String(string[..<schemeEnd.upperBound]) + userInfo + "hosts" + rest[authorityEnd...], String(hostPart))
    }

    static func parseHosts(_ list: String, defaultPort: Int) throws(SpoolStoreError) -> [Host] {
        var hosts: [Host] = []
        for entry in list.split(separator: ",", omittingEmptySubsequences: false) {
            var name = Substring(entry)
            var port = defaultPort
            if name.hasPrefix("["), let close = name.firstIndex(of: "]") {
                let after = name[name.index(after: close)...]
                if after.hasPrefix(":") {
                    guard let number = Int(after.dropFirst()), (1...65535).contains(number) else {
                        throw .invalidConfiguration("The database URL's host '\(entry)' has a bad port.")
                    }
                    port = number
                }
                name = name[name.index(after: name.startIndex)..<close]
            } else if let colon = name.lastIndex(of: ":") {
                guard let number = Int(name[name.index(after: colon)...]), (1...65535).contains(number) else {
                    throw .invalidConfiguration("The database URL's host '\(entry)' has a bad port.")
                }
                port = number
                name = name[..<colon]
            }
            guard !name.isEmpty else { throw .invalidConfiguration("The database URL's list of hosts has an empty entry.") }
            hosts.append(Host(name: String(name), port: port))
        }
        return hosts
    }

    /// The URL with any password replaced, for logs and errors.
    static func redacted(_ string: String) -> String {
        guard let schemeEnd = string.range(of: "://") else { return string }
        let rest = string[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@"), let colon = rest[..<at].firstIndex(of: ":") else { return string }
        return String(string[..<schemeEnd.upperBound]) + rest[..<colon] + ":***" + rest[at...]
    }
}

/// Errors of the store that are not query failures: configuration and the embedded cluster.
package struct SpoolStoreError: Error, Sendable, CustomStringConvertible {
    package let description: String

    package static func invalidConfiguration(_ message: String) -> SpoolStoreError { SpoolStoreError(description: message) }
    package static func embeddedCluster(_ message: String) -> SpoolStoreError { SpoolStoreError(description: message) }
    package static func migration(_ message: String) -> SpoolStoreError { SpoolStoreError(description: message) }
}
