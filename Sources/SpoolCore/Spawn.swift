import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The one place Spool starts processes: posix_spawn and waitpid. Foundation's Process left a
/// daemonising child (`pg_ctl start`) unreaped and gives no process group, so nothing uses it.
package enum Spawn {
    /// Where a child's stream comes from or goes.
    package enum Stream: Sendable {
        case devNull
        /// Output into this file, created or truncated: a daemonising child must not hold a pipe open.
        case file(String)
        /// This descriptor of ours, duplicated onto the child's.
        case descriptor(Int32)
        /// stderr only: wherever stdout goes.
        case stdout
    }

    /// Starts `arguments[0]` (a path, or a name looked up in `PATH` when `searchPath`) with
    /// `environment` (nil: ours), its streams as given; with `newProcessGroup` it leads a group of
    /// its own, so a signal to `-pid` reaches its children too. Throws the `errno` it failed with.
    package static func start(
        _ arguments: [String], environment: [String: String]? = nil, stdin: Stream = .devNull, stdout: Stream, stderr: Stream = .stdout,
        newProcessGroup: Bool = false, searchPath: Bool = false
    ) throws(SpawnError) -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, stream) in [(Int32(0), stdin), (1, stdout), (2, stderr)] {
            switch stream {
            case .devNull: posix_spawn_file_actions_addopen(&actions, target, "/dev/null", target == 0 ? O_RDONLY : O_WRONLY, 0)
            case .file(let path): posix_spawn_file_actions_addopen(&actions, target, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            case .descriptor(let fd): posix_spawn_file_actions_adddup2(&actions, fd, target)
            case .stdout: posix_spawn_file_actions_adddup2(&actions, 1, target)
            }
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        if newProcessGroup {
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
            posix_spawnattr_setpgroup(&attributes, 0)
        }
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] =
            (environment ?? ProcessInfo.processInfo.environment).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let spawn = searchPath ? posix_spawnp : posix_spawn
        let spawned = spawn(&pid, arguments[0], &actions, &attributes, argv, envp)
        guard spawned == 0 else { throw SpawnError(command: arguments.first ?? "", code: spawned) }
        return pid
    }

    /// Waits for the child to end (blocking: call it off the concurrency pool's threads when it may
    /// take long) and answers its exit status, 128 + n when signal n ended it.
    package static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return exitStatus(status)
    }

    /// The exit status, if the child has ended, without waiting.
    package static func poll(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return exitStatus(status)
    }

    /// WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as functions.
    private static func exitStatus(_ status: Int32) -> Int32 {
        (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Our environment with `overrides` on top.
    package static func environment(with overrides: [String: String]) -> [String: String] {
        ProcessInfo.processInfo.environment.merging(overrides) { _, new in new }
    }
}

/// A process that could not be started, and why.
package struct SpawnError: Error, CustomStringConvertible {
    package let command: String
    package let code: Int32
    package var reason: String { String(cString: strerror(code)) }
    package var description: String { "Cannot start \(command): \(reason)." }
}
