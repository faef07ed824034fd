import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Runs a short-lived command to completion with posix_spawn and waitpid.
///
/// Foundation's Process left `pg_ctl start`'s wrapper unreaped here (the daemon it forks keeps
/// running), so the embedded cluster drives its tools through this instead.
enum ChildProcess {
    /// Exit status and combined stdout/stderr of `arguments[0]` run in `directory`.
    static func run(_ arguments: [String], in directory: String) throws(SpoolStoreError) -> (status: Int32, output: String) {
        // Output goes to a file, not a pipe: a daemonising child must not hold our read open.
        let outputPath = NSTemporaryDirectory() + "spool-child-\(getpid())-\(UUID().uuidString).log"
        defer { unlink(outputPath) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        // GNU env -C changes directory: glibc's posix_spawn_file_actions_addchdir_np is not imported.
        let arguments = ["/usr/bin/env", "-C", directory] + arguments
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, arguments[0], &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw .embeddedCluster("Cannot start \(arguments[3]): \(String(cString: strerror(spawned))).")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED / WEXITSTATUS, which Swift does not import as functions.
        let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exitStatus, output)
    }
}
