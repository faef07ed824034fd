import Foundation
import Testing

@testable import SpoolStore

/// The official `together` SDK from PyPI against a live spool-broker process.
@Suite struct TogetherSDKTests {
    @Test func theSDKsQueueClientWorksAgainstABroker() async throws {
        let key = "sdk-test-key-\(UUID().uuidString)"
        let database = try await TestDatabase.migrated()
        let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", key])
        let model = uniqueModel("sdk")
        // A job already running, to see what the SDK does with a 409 from cancel.
        let running = try await TestDatabase.withStore { store in
            let outcome = try await store.submit(
                .init(model: model, payload: ["prompt": "busy"]), submittedBy: "test", tenant: "default", weight: 1, idempotency: nil,
                logger: TestDatabase.logger)
            _ = try await store.jobs.claim(
                models: [model], limit: 1, leaseSeconds: 300, maxRunSeconds: 3600, workerID: "w", on: store.client, logger: TestDatabase.logger)
            guard case .created(let id) = outcome else { throw TestFailure("no job created") }
            return id.uuidString.lowercased()
        }
        let (status, output) = try await PythonScript.run(
            "together_queue.py",
            environment: [
                "TOGETHER_BASE_URL": broker.baseURL, "TOGETHER_API_KEY": key, "SPOOL_MODEL": model, "SPOOL_RUNNING_ID": running,
            ])
        #expect(status == 0, "together SDK script failed:\n\(output)")
        #expect(output.contains("together SDK 3.1.1 passed"), "\(output)")
        #expect(await broker.process.stop() == 0)
    }
}
