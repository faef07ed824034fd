import Foundation
import Logging
import PostgresNIO
import Testing

@testable import SpoolStore

#if canImport(Glibc)
import Glibc
#endif

/// `--database-url` with `sslmode=verify-full`: over TLS, and refused when the server's
/// certificate does not name the host connected to, or comes from another authority.
@Suite struct DatabaseTLSTests {
    /// A PostgreSQL cluster of its own, serving TLS on 127.0.0.1 with `certificate`, run as the
    /// postgres user when the tests run as root (PostgreSQL refuses root).
    final class TLSCluster {
        let directory: String
        let cluster: String
        let port: Int
        let bin: String
        let user: String?

        init(certificate: TestCertificate) async throws {
            directory = NSTemporaryDirectory() + "spool-tls-pg-\(UUID().uuidString.prefix(8))"
            cluster = directory + "/postgres"
            try FileManager.default.createDirectory(atPath: cluster, withIntermediateDirectories: true)
            chmod(directory, 0o755)
            user = getuid() == 0 ? "postgres" : nil
            bin = try EmbeddedPostgres.findBinDirectory()
            port = try freePort()
            if let user, let account = getpwnam(user) { chown(cluster, account.pointee.pw_uid, account.pointee.pw_gid) }
            chmod(cluster, 0o700)
            try EmbeddedPostgres.run(
                binDirectory: bin, "initdb", ["-D", cluster, "-U", "spool", "--auth=trust", "--encoding=UTF8", "--locale=C"], as: user, in: cluster)
            for (source, name) in [(certificate.certificatePath, "server.crt"), (certificate.keyPath, "server.key")] {
                try FileManager.default.copyItem(atPath: source, toPath: cluster + "/" + name)
                if let user, let account = getpwnam(user) { chown(cluster + "/" + name, account.pointee.pw_uid, account.pointee.pw_gid) }
                chmod(cluster + "/" + name, 0o600)
            }
            let options = "-c listen_addresses=127.0.0.1 -c port=\(port) -c unix_socket_directories=\(cluster) -c ssl=on -c max_connections=40"
            try EmbeddedPostgres.run(
                binDirectory: bin, "pg_ctl", ["-D", cluster, "-o", options, "-l", cluster + "/log", "-w", "start"], as: user, in: cluster)
        }

        /// The server's log, for a failure's message.
        var log: String { (try? String(contentsOfFile: cluster + "/log", encoding: .utf8))?.suffix(2000).description ?? "" }

        func stop() {
            _ = try? EmbeddedPostgres.run(binDirectory: bin, "pg_ctl", ["-D", cluster, "-m", "immediate", "stop"], as: user, in: cluster)
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Connects with `url` (one connection, as the broker's pool makes them) and answers whether
    /// the session is encrypted, or throws.
    static func sessionUsesTLS(_ url: String) async throws -> Bool {
        let parsed = try DatabaseURL(url)
        let connection = try await PostgresConnection.connect(
            configuration: try parsed.probe(parsed.hosts[0]), id: 1, logger: TestDatabase.logger)
        defer { Task { try? await connection.close() } }
        let rows = try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", logger: TestDatabase.logger)
        return try await rows.collect().first?.decode(Bool.self) ?? false
    }

    @Test func verifyFullConnectsOverTLSAndRefusesACertificateForAnotherName() async throws {
        // The server's certificate names localhost only (not 127.0.0.1).
        let certificate = try await TestCertificate.make(subjectAltName: "DNS:localhost", commonName: "localhost")
        let stranger = try await TestCertificate.make()
        let server = try await TLSCluster(certificate: certificate)
        defer { server.stop() }
        let base = "postgres://spool@%@:\(server.port)/postgres?sslmode=%@&sslrootcert=%@"
        func url(_ host: String, _ mode: String, _ ca: TestCertificate = certificate) -> String {
            String(format: base, host, mode, ca.certificatePath)
        }

        do {
            #expect(try await Self.sessionUsesTLS(url("localhost", "verify-full")), "the name matches: connected, encrypted")
        } catch {
            Issue.record("verify-full to localhost failed: \(String(reflecting: error))\nthe server said: \(server.log)")
        }
        await #expect(throws: (any Error).self, "127.0.0.1 is not a name the certificate holds") {
            _ = try await Self.sessionUsesTLS(url("127.0.0.1", "verify-full"))
        }
        #expect(try await Self.sessionUsesTLS(url("127.0.0.1", "verify-ca")), "verify-ca checks the authority, not the name")
        await #expect(throws: (any Error).self, "a certificate from an authority sslrootcert does not name") {
            _ = try await Self.sessionUsesTLS(url("localhost", "verify-full", stranger))
        }

        // A broker on it: migrations, a job in and out.
        let broker = try await BrokerProcess.start(databaseURL: url("localhost", "verify-full"))
        let model = uniqueModel("tls")
        let id = try await HTTP.submit(broker: broker, model: model)
        #expect(try await HTTP.status(broker: broker, model: model, requestID: id)["status"] == "pending")
        #expect(await broker.process.stop() == 0, "\(broker.process.output.suffix(3000))")
    }
}
