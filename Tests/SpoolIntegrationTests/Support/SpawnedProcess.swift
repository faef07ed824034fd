import Foundation
import SpoolCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A real child process (a broker, a Python SDK script), its output captured in a file.
final class SpawnedProcess: Sendable {
    let pid: pid_t
    let outputPath: String
    let arguments: [String]
    private let exitStatus = Mutex<Int32?>(nil)

    /// Directory of the package's built executables: the test bundle sits beside them.
    static let buildDirectory: String = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().path
    /// The package's root, for scripts kept under Tests/.
    static let packageRoot: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        outputPath = NSTemporaryDirectory() + "spool-test-\(UUID().uuidString.prefix(8)).log"
        do {
            pid = try Spawn.start(arguments, environment: Spawn.environment(with: environment), stdout: .file(outputPath), searchPath: true)
        } catch {
            throw TestFailure("cannot start \(arguments[0]): \(error.reason)")
        }
        self.arguments = arguments
    }

    var output: String { (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits for the process to end; returns its exit status.
    @discardableResult
    func stop(signal: Int32 = SIGTERM) async -> Int32 {
        if reap() == nil { kill(pid, signal) }
        return (try? await wait(timeout: nil)) ?? -1
    }

    /// Sends `signal` without waiting (SIGKILL to simulate a crash, SIGTERM to start a drain).
    func signal(_ signal: Int32) {
        if reap() == nil { kill(pid, signal) }
    }

    /// Waits for the process to end by itself; returns its exit status (128+n for signal n).
    @discardableResult
    func wait(timeout: Duration? = nil) async throws -> Int32 {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            if let status = reap() { return status }
            if let deadline, ContinuousClock.now >= deadline {
                throw TestFailure("\(arguments[0]) did not exit within \(timeout!); output so far:\n\(output)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// The exit status once the process has ended, reaping it without blocking.
    func reap() -> Int32? {
        exitStatus.withLock { exitStatus in
            if let exitStatus { return exitStatus }
            exitStatus = Spawn.poll(pid)
            return exitStatus
        }
    }

    /// Polls the output until `pattern` matches; returns the first capture group.
    func waitForOutput(matching pattern: String, timeout: Duration = .seconds(60)) async throws -> String {
        let regex = try Regex(pattern)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let match = output.firstMatch(of: regex) {
                return match.output.count > 1 ? String(match.output[1].substring ?? "") : String(match.output[0].substring ?? "")
            }
            if kill(pid, 0) != 0 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("no output matching \(pattern) within \(timeout); output so far:\n\(output)")
    }

    deinit {
        if reap() == nil {
            kill(pid, SIGKILL)
            _ = Spawn.wait(pid)
        }
        unlink(outputPath)
    }
}

/// A live `spool-broker` process.
struct BrokerProcess {
    let process: SpawnedProcess
    let port: Int
    var scheme = "http"
    var baseURL: String { "\(scheme)://127.0.0.1:\(port)" }

    /// Starts a broker on `port` (0: a free one) against `databaseURL` and waits until it listens.
    static func start(
        databaseURL: String, port: Int = 0, arguments: [String] = [], environment: [String: String] = [:]
    ) async throws -> BrokerProcess {
        let process = try SpawnedProcess(
            [SpawnedProcess.buildDirectory + "/spool-broker", "--database-url", databaseURL, "--port", "\(port)"] + arguments,
            environment: environment)
        let port = try await process.waitForOutput(matching: #"listening on 127\.0\.0\.1:(\d+)"#)
        return BrokerProcess(process: process, port: Int(port)!, scheme: arguments.contains("--tls-cert") ? "https" : "http")
    }
}

/// A live worker process: `spool-worker` or the example Swift worker.
struct WorkerProcess {
    let process: SpawnedProcess

    /// Starts `spool-worker` with `arguments` against `brokers` and waits until it runs.
    static func start(
        brokers: [BrokerProcess], models: [String], arguments: [String], environment: [String: String] = [:]
    ) async throws -> WorkerProcess {
        let process = try SpawnedProcess(
            [SpawnedProcess.buildDirectory + "/spool-worker"] + brokers.flatMap { ["--broker", $0.baseURL] }
                + models.flatMap { ["--model", $0] } + arguments,
            environment: environment)
        _ = try await process.waitForOutput(matching: "worker started")
        return WorkerProcess(process: process)
    }

    /// Starts the README's Swift worker (Examples/SwiftWorker), configured by environment.
    static func startExample(brokers: [BrokerProcess], models: [String], concurrency: Int) async throws -> WorkerProcess {
        let process = try SpawnedProcess(
            [SpawnedProcess.buildDirectory + "/spool-example-worker"],
            environment: [
                "SPOOL_BROKER_URL": brokers.map(\.baseURL).joined(separator: ","), "SPOOL_MODELS": models.joined(separator: ","),
                "SPOOL_CONCURRENCY": "\(concurrency)",
            ])
        _ = try await process.waitForOutput(matching: "worker started")
        return WorkerProcess(process: process)
    }
}

/// A TCP port nothing listens on right now (the kernel's pick, released at once).
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw TestFailure("cannot find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
