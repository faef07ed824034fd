import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs each job as a process: `spool-worker --exec "<command>"`, in any language.
///
/// The job is one JSON object on stdin (`request_id`, `model`, `payload`, `info`, `attempt`).
/// Each stdout line is a JSON object: `{"emit": {…}}` merges into info, `{"log": "…"}` adds a log
/// line, `{"outputs": {…}}` is the result; other stdout lines are kept as logs. stderr lines are
/// kept as logs. A non-zero exit fails the job with stderr's tail; exit 75 (EX_TEMPFAIL) fails it
/// as retryable. When the job is asked to stop, the process group gets SIGTERM, then SIGKILL.
///
/// Files the command writes into `$SPOOL_OUTPUT_DIR` (a fresh directory per job) are uploaded to
/// the broker once it exits 0: the outputs get `files` (one object per file: `file_id`,
/// `file_name`, `file_size`, `content_type`, `url`), and an output whose value is a file's name is
/// replaced by that file's object.
package struct CommandHandler: JobHandler {
    package let command: String
    /// Between SIGTERM and SIGKILL when a job is stopped.
    package var killGrace: Duration = .seconds(10)
    /// How much of stderr's end becomes the error of a failed job.
    static let stderrTailLines = 20

    package init(command: String) {
        self.command = command
        // Once per process: a command that exits without reading its stdin must not kill the worker.
        signal(SIGPIPE, SIG_IGN)
    }

    package func run(_ job: Job, context: JobContext) async throws -> [String: JSONValue] {
        let input: JSONValue = [
            "request_id": .string(job.requestID), "model": .string(job.model), "payload": .object(job.payload),
            "info": .object(job.info), "attempt": .int(Int64(job.attempt)), "path": job.path.map(JSONValue.string) ?? .null,
        ]
        let outputDirectory = FileManager.default.temporaryDirectory
            .appendingPathComponent("spool-\(job.requestID)-\(job.attempt)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: outputDirectory) }
        let process = try ChildProcess(
            shellCommand: command, input: Data((input.jsonText + "\n").utf8),
            environment: [
                "SPOOL_REQUEST_ID": job.requestID, "SPOOL_MODEL": job.model, "SPOOL_ATTEMPT": "\(job.attempt)",
                "SPOOL_OUTPUT_DIR": outputDirectory,
            ])
        var outputs: [String: JSONValue]?
        var stderrTail: [String] = []
        await withTaskCancellationHandler {
            for await line in process.output {
                switch line {
                case .stdout(let text): handleStdout(text, context: context, outputs: &outputs)
                case .stderr(let text):
                    context.log(text, level: "stderr", source: "stderr")
                    stderrTail.append(text)
                    if stderrTail.count > Self.stderrTailLines { stderrTail.removeFirst() }
                }
            }
        } onCancel: {
            process.send(signal: SIGTERM)
            let grace = killGrace
            Task {
                try? await Task.sleep(for: grace)
                process.send(signal: SIGKILL)
            }
        }
        let status = await process.exitStatus()
        if Task.isCancelled { throw CancellationError() }
        guard status == 0 else {
            let tail = stderrTail.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)
            let message = "The command exited with status \(status)" + (tail.isEmpty ? "." : ": \(tail)")
            throw JobFailure(message, retryable: status == 75)
        }
        return try await uploadFiles(in: outputDirectory, into: outputs ?? [:], context: context)
    }

    /// Uploads the regular files the command left in `directory` (by name order) and names them in the outputs.
    private func uploadFiles(in directory: String, into outputs: [String: JSONValue], context: JobContext) async throws -> [String: JSONValue] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.sorted() ?? []
        var outputs = outputs
        var files: [JSONValue] = []
        for name in names {
            let path = directory + "/" + name
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let file = try await context.upload(fileAt: path, name: name)
            files.append(file)
            for (key, value) in outputs where value == .string(name) { outputs[key] = file }
        }
        if !files.isEmpty { outputs["files"] = .array(files) }
        return outputs
    }

    private func handleStdout(_ text: String, context: JobContext, outputs: inout [String: JSONValue]?) {
        guard text.first == "{", let members = (try? JSONValue.parse(text))?.objectValue else {
            if !text.isEmpty { context.log(text, level: "stdout", source: "stdout") }
            return
        }
        var understood = false
        if let emit = members["emit"]?.objectValue {
            context.emit(emit)
            understood = true
        }
        if let log = members["log"] {
            let level = members["level"]?.stringValue ?? "info"
            context.log(log.stringValue ?? log.jsonText, level: level, source: "handler")
            understood = true
        }
        if let result = members["outputs"] {
            outputs = result.objectValue ?? ["output": result]
            understood = true
        }
        if !understood { context.log(text, level: "stdout", source: "stdout") }
    }
}
