import Foundation

/// Runs the Python scripts under Tests/sdk with the real client SDKs from PyPI.
///
/// The interpreter is `SPOOL_TEST_PYTHON`, else the package's `.venv` (which `scripts/test` makes
/// from Tests/sdk/requirements.txt).
enum PythonScript {
    static var interpreter: String {
        if let python = ProcessInfo.processInfo.environment["SPOOL_TEST_PYTHON"], !python.isEmpty { return python }
        return SpawnedProcess.packageRoot + "/.venv/bin/python"
    }

    /// Runs `Tests/sdk/<name>` to its end and returns its exit status and output.
    static func run(
        _ name: String, arguments: [String] = [], environment: [String: String], timeout: Duration = .seconds(120)
    ) async throws -> (status: Int32, output: String) {
        guard FileManager.default.isExecutableFile(atPath: interpreter) else {
            throw TestFailure(
                "No Python with the client SDKs at \(interpreter): run ./scripts/test (it makes .venv from Tests/sdk/requirements.txt) or set SPOOL_TEST_PYTHON."
            )
        }
        let process = try SpawnedProcess(
            [interpreter, "-u", SpawnedProcess.packageRoot + "/Tests/sdk/" + name] + arguments, environment: environment)
        let status = try await process.wait(timeout: timeout)
        return (status, process.output)
    }
}
