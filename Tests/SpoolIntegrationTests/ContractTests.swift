import Foundation
import SpoolCore
import Testing

@testable import SpoolBroker

/// The broker against its written contracts: the OpenAPI document (validated, and held to by a
/// schemathesis run against a live broker) and the deployment files (deploy/check.py).
@Suite(.serialized) struct ContractTests {
    static let venv = SpawnedProcess.packageRoot + "/.venv/bin/"

    func run(
        _ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(300)
    ) async throws -> (
        status: Int32, output: String
    ) {
        let process = try SpawnedProcess(arguments, environment: environment)
        let status = try await process.wait(timeout: timeout)
        return (status, process.output)
    }

    /// schemathesis from PyPI generates requests from the document for every operation (the
    /// streams and RunPod's long-polls excepted: they stay open) and checks every answer: no 5xx, and status codes,
    /// content types, headers and bodies as documented. First in this serialized suite: the longest test of the
    /// run (about a minute) starts early instead of after its neighbours, which lengthened the run's tail.
    @Test func schemathesisFindsNoServerErrorsAndNoContradictions() async throws {
        let key = "schemathesis-key-\(UUID().uuidString)"
        // A database of its own: the keys it creates through the admin API would close the open
        // brokers of other tests sharing a database.
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", key])
            let report = NSTemporaryDirectory() + "spool-schemathesis-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: report, withIntermediateDirectories: true)
            let config = report + "/schemathesis.toml"
            try Self.schemathesisConfiguration.write(toFile: config, atomically: true, encoding: .utf8)
            let (status, output) = try await run(
                [
                    Self.venv + "schemathesis", "--config-file", config, "run", broker.baseURL + "/openapi.json", "--header",
                    "Authorization: Bearer \(key)",
                    "--checks",
                    "all",
                    "--exclude-path-regex", "/stream$|/job-take|/job-stop/|/runsync$", "--phases", "examples,coverage,fuzzing,stateful",
                    "--max-examples",
                    "25",
                    "--request-timeout", "40", "--max-response-time", "35", "--seed", "20261123", "--report-dir", report, "--no-color",
                ],
                // Valid lease waits cut to a second (Tests/sdk/schemathesis_hooks.py says why).
                environment: ["SCHEMATHESIS_HOOKS": SpawnedProcess.packageRoot + "/Tests/sdk/schemathesis_hooks.py"], timeout: .seconds(600))
            let summary = output.components(separatedBy: "\n").filter { $0.contains("generated") || $0.contains("passed") || $0.contains("failed") }
            print("schemathesis: \(summary.suffix(3).joined(separator: " | "))")
            #expect(status == 0, "\(output.suffix(6000))")
            #expect(await broker.process.stop() == 0)
        }
    }

    @Test func theOpenAPIDocumentIsValidAndGenerated() async throws {
        let document = SpawnedProcess.packageRoot + "/docs/openapi/openapi.json"
        let generated = try await run([PythonScript.interpreter, SpawnedProcess.packageRoot + "/docs/openapi/generate.py", "--check"])
        #expect(generated.status == 0, "\(generated.output)")
        let validated = try await run([Self.venv + "openapi-spec-validator", document])
        #expect(validated.status == 0, "\(validated.output)")
        #expect(validated.output.contains("OK"))
    }

    @Test func theBrokerServesTheDocument() async throws {
        let file = try JSONValue.parse(try String(contentsOfFile: SpawnedProcess.packageRoot + "/docs/openapi/openapi.json", encoding: .utf8))
        try await withTestBroker({ $0.webhookSecret = WebhookTests.secret }) { broker in
            let served = try await broker.call(.get, "/openapi.json")
            #expect(served.status == 200)
            #expect(served.json == file)
        }
        // Without a webhook secret it takes no webhook, and its document says so.
        try await withTestBroker { broker in
            let served = try await broker.call(.get, "/openapi.json")
            #expect(served.status == 200)
            let schemas = served["components"]?.objectValue?["schemas"]?.objectValue
            for (schema, member) in [("SubmitRequest", "webhook_url"), ("BulkSubmitItem", "webhook_url"), ("RunPodRunRequest", "webhook")] {
                let property = schemas?[schema]?.objectValue?["properties"]?.objectValue?[member]?.objectValue
                #expect(property?["type"] == "null", "\(schema).\(member): \(String(describing: property))")
            }
            #expect(served["components"]?.objectValue?["parameters"]?.objectValue?["FalWebhook"] == nil)
            let falSubmit = served["paths"]?.objectValue?["/fal/{owner}/{app}"]?.objectValue?["post"]?.objectValue?["parameters"]?.arrayValue
            #expect(falSubmit?.count == 3, "\(String(describing: falSubmit))")
            #expect(!served.json.jsonText.contains(OpenAPIDocument.marker))
            // Everything else is the file's.
            #expect(served["paths"]?.objectValue?.keys.sorted() == file.objectValue?["paths"]?.objectValue?.keys.sorted())
        }
    }

    /// What no schema can state, told to schemathesis instead: these operations refuse some requests
    /// the document allows for a reason outside the request's own shape (the clock, the content's
    /// hash, a job's state, two parameters together), so a 400 (under /fal, also a 422: fal's
    /// conflict) there is not a contradiction. Every other check still applies to them.
    static let schemathesisConfiguration = [
        // expires_at must be in the future: the schema has no clock.
        ("createKey", "400"),
        // checksum must be the SHA-256 of the file part.
        ("createFile", "400"),
        // A cursor is of the kind its list is (`i…` without request_id, `r…` with it).
        ("listJobs", "400"),
        // An array body takes idempotency_key in each job, not the Idempotency-Key header.
        ("submitJob", "400"),
        // A reused Idempotency-Key is fal's 422; a result asked for too early and a cancel of a finished request are fal's 400s.
        ("falSubmit", "422"),
        ("falSubmitToPath", "422"),
        ("falGetResult", "400"),
        ("falCancel", "400"),
        // An integer written with a fraction (92.0): JSON Schema counts it an integer, the broker refuses it.
        ("createBatch", "400"),
        ("leaseJobs", "400"),
    ].map { operation, status in
        // One filter an entry: schemathesis matches an entry when any of its filters does.
        """
        [[operations]]
        include-operation-id = "\(operation)"
        checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "\(status)", "401", "403", "404", "409", "429", "5xx"]

        """
    }.joined()

    @Test func theDeploymentFilesPassTheirChecks() async throws {
        let (status, output) = try await run([PythonScript.interpreter, SpawnedProcess.packageRoot + "/deploy/check.py"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("checks passed"), "\(output)")
    }
}
