import Foundation
import SpoolCore
import Testing

/// The broker against its written contracts: the OpenAPI document (validated, and held to by a
/// schemathesis run against a live broker) and the deployment files (deploy/check.py).
@Suite(.serialized) struct ContractTests {
    static let venv = SpawnedProcess.packageRoot + "/.venv/bin/"

    func run(_ arguments: [String], timeout: Duration = .seconds(300)) async throws -> (status: Int32, output: String) {
        let process = try SpawnedProcess(arguments)
        let status = try await process.wait(timeout: timeout)
        return (status, process.output)
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
        try await withTestBroker { broker in
            let served = try await broker.call(.get, "/openapi.json")
            let file = try JSONValue.parse(try String(contentsOfFile: SpawnedProcess.packageRoot + "/docs/openapi/openapi.json", encoding: .utf8))
            #expect(served.status == 200)
            #expect(served.json == file)
        }
    }

    /// schemathesis from PyPI generates requests from the document for every operation (the
    /// streams and RunPod's long-polls excepted: they stay open) and checks every answer: no 5xx, and status codes,
    /// content types, headers and bodies as documented.
    @Test func schemathesisFindsNoServerErrorsAndNoContradictions() async throws {
        let key = "schemathesis-key-\(UUID().uuidString)"
        // A database of its own: the keys it creates through the admin API would close the open
        // brokers of other tests sharing a database.
        try await TestDatabase.withFreshDatabase(migrated: true) { database in
            let broker = try await BrokerProcess.start(databaseURL: TestDatabase.url(database: database), arguments: ["--api-key", key])
            let report = NSTemporaryDirectory() + "spool-schemathesis-\(UUID().uuidString.prefix(8))"
            let (status, output) = try await run(
                [
                    Self.venv + "schemathesis", "run", broker.baseURL + "/openapi.json", "--header", "Authorization: Bearer \(key)",
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
                    "--exclude-path-regex", "/stream$|/job-take|/job-stop/|/runsync$", "--phases", "examples,coverage,fuzzing", "--max-examples",
                    "25",
                    "--request-timeout", "40", "--seed", "20261123", "--report-dir", report, "--no-color",
                ], timeout: .seconds(600))
            let summary = output.components(separatedBy: "\n").filter { $0.contains("generated") || $0.contains("passed") || $0.contains("failed") }
            print("schemathesis: \(summary.suffix(3).joined(separator: " | "))")
            #expect(status == 0, "\(output.suffix(6000))")
            #expect(await broker.process.stop() == 0)
        }
    }

    @Test func theDeploymentFilesPassTheirChecks() async throws {
        let (status, output) = try await run([PythonScript.interpreter, SpawnedProcess.packageRoot + "/deploy/check.py"])
        #expect(status == 0, "\(output)")
        #expect(output.contains("checks passed"), "\(output)")
    }
}
