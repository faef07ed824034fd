import Foundation
import Testing

/// The official `fal-client` from PyPI against a live spool-broker serving HTTPS.
@Suite struct FalSDKTests {
    @Test func falClientWorksAgainstABrokerOverTLS() async throws {
        let certificate = try await TestCertificate.make()
        let key = "fal-test-key-\(UUID().uuidString)"
        let database = try await TestDatabase.migrated()
        let broker = try await BrokerProcess.start(
            databaseURL: TestDatabase.url(database: database),
            arguments: ["--api-key", key, "--tls-cert", certificate.certificatePath, "--tls-key", certificate.keyPath])
        #expect(broker.baseURL.hasPrefix("https://"))
        let app = "falsdk/\(UUID().uuidString.prefix(8).lowercased())"
        let handler = "\(PythonScript.interpreter) \(SpawnedProcess.packageRoot)/Tests/sdk/exec_handler.py"
        let worker = [
            SpawnedProcess.buildDirectory + "/spool-worker", "--broker", broker.baseURL, "--model", app, "--api-key", key,
            "--ca-file", certificate.certificatePath, "--exec", "'\(handler)'",
        ].joined(separator: " ")
        let (status, output) = try await PythonScript.run(
            "fal_queue.py",
            environment: [
                "FAL_QUEUE_RUN_HOST": "127.0.0.1:\(broker.port)/fal", "FAL_KEY": key, "SSL_CERT_FILE": certificate.certificatePath,
                "SPOOL_APP": app, "SPOOL_IDLE_APP": "falsdk/idle-\(UUID().uuidString.prefix(8).lowercased())",
                "SPOOL_WORKER_COMMAND": worker,
            ])
        #expect(status == 0, "fal-client script failed:\n\(output)\nthe broker said:\n\(broker.process.output.suffix(6000))")
        #expect(output.contains("passed"), "\(output)")
        #expect(await broker.process.stop() == 0, "\(broker.process.output.prefix(4000))")
    }
}
