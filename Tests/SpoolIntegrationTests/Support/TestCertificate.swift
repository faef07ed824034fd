import Foundation

/// A self-signed certificate (by default for 127.0.0.1 and localhost), made with openssl for one test.
struct TestCertificate {
    let directory: String
    var certificatePath: String { directory + "/cert.pem" }
    var keyPath: String { directory + "/key.pem" }

    static func make(subjectAltName: String = "IP:127.0.0.1,DNS:localhost", commonName: String = "127.0.0.1") async throws -> TestCertificate {
        let directory = NSTemporaryDirectory() + "spool-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let openssl = try SpawnedProcess([
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=\(commonName)",
            "-addext", "subjectAltName=\(subjectAltName)",
            "-keyout", directory + "/key.pem", "-out", directory + "/cert.pem",
        ])
        guard try await openssl.wait(timeout: .seconds(60)) == 0 else { throw TestFailure("openssl failed: \(openssl.output)") }
        return TestCertificate(directory: directory)
    }
}
