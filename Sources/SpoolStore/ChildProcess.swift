import Foundation
import SpoolCore

#if canImport(Glibc)
import Glibc
#endif

/// Runs a short-lived command to completion (through `Spawn`, which reaps `pg_ctl start`'s
/// wrapper though the daemon it forks keeps running): how the embedded cluster drives its tools.
enum ChildProcess {
    /// Exit status and combined stdout/stderr of `arguments[0]` run in `directory`.
    static func run(_ arguments: [String], in directory: String) throws(SpoolStoreError) -> (status: Int32, output: String) {
        // Output goes to a file, not a pipe: a daemonising child must not hold our read open.
        let outputPath = NSTemporaryDirectory() + "spool-child-\(getpid())-\(UUID().uuidString).log"
        defer { unlink(outputPath) }

        // GNU env -C changes directory: glibc's posix_spawn_file_actions_addchdir_np is not imported.
        let pid: pid_t
        do {
            pid = try Spawn.start(["/usr/bin/env", "-C", directory] + arguments, stdout: .file(outputPath))
        } catch {
            throw .embeddedCluster("Cannot start \(arguments[0]): \(error.reason).")
        }
        let exitStatus = Spawn.wait(pid)
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        return (exitStatus, output)
    }
}
