import Foundation
import SpoolCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A child process with its stdin fed once and its stdout and stderr read line by line.
///
/// Blocking reads and `waitpid` run on their own threads, never on the concurrency pool's few
/// threads. The child leads its own process group, so a stop signal reaches its children too.
final class ChildProcess: Sendable {
    enum Output: Sendable {
        case stdout(String)
        case stderr(String)
    }

    private static let spawnLock = NSLock()

    let pid: pid_t
    /// Lines of both streams, as they come; finishes when both are closed.
    let output: AsyncStream<Output>
    private let exit: Mutex<(status: Int32?, waiter: CheckedContinuation<Int32, Never>?)>

    /// Starts `/bin/sh -c command`, writes `input` to its stdin and closes it.
    ///
    /// The caller ignores SIGPIPE: a command that exits without reading its input must not kill the worker.
    init(shellCommand command: String, input: Data, environment: [String: String] = [:]) throws {
        var stdinPipe: [Int32] = [0, 0]
        var stdoutPipe: [Int32] = [0, 0]
        var stderrPipe: [Int32] = [0, 0]
        // Pipes are made close-on-exec under one lock with the spawn: a command started for another
        // job at the same moment must not inherit these ends, or this job's output would not end
        // until that command exits.
        Self.spawnLock.lock()
        defer { Self.spawnLock.unlock() }
        for index in 0..<3 {
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else {
                throw JobFailure("Cannot create pipes for the command: \(String(cString: strerror(errno))).", retryable: true)
            }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            switch index {
            case 0: stdinPipe = fds
            case 1: stdoutPipe = fds
            default: stderrPipe = fds
            }
        }
        let pid: pid_t
        do {
            pid = try Spawn.start(
                ["/bin/sh", "-c", command], environment: Spawn.environment(with: environment), stdin: .descriptor(stdinPipe[0]),
                stdout: .descriptor(stdoutPipe[1]), stderr: .descriptor(stderrPipe[1]), newProcessGroup: true)
        } catch {
            for fd in stdinPipe + stdoutPipe + stderrPipe { close(fd) }
            throw JobFailure("Cannot start the command: \(error.reason).", retryable: false)
        }
        // The child's ends are its own now.
        close(stdinPipe[0])
        close(stdoutPipe[1])
        close(stderrPipe[1])
        self.pid = pid
        self.exit = Mutex((nil, nil))
        let (stream, continuation) = AsyncStream<Output>.makeStream()
        self.output = stream

        let stdinFD = stdinPipe[1]
        Thread.detachNewThread {
            input.withUnsafeBytes { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = write(stdinFD, buffer.baseAddress! + offset, buffer.count - offset)
                    if written < 0 && errno == EINTR { continue }
                    if written <= 0 { break }
                    offset += written
                }
            }
            close(stdinFD)
        }
        let open = Mutex(2)
        for (fd, wrap) in [(stdoutPipe[0], Output.stdout), (stderrPipe[0], Output.stderr)] {
            Thread.detachNewThread {
                Self.readLines(fd) { continuation.yield(wrap($0)) }
                close(fd)
                if open.withLock({
                    $0 -= 1
                    return $0
                }) == 0 {
                    continuation.finish()
                }
            }
        }
        Thread.detachNewThread { [self] in
            let code = Spawn.wait(self.pid)
            let waiter = self.exit.withLock { state -> CheckedContinuation<Int32, Never>? in
                state.status = code
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: code)
        }
    }

    /// The exit status once the process has ended (128 + n for signal n).
    func exitStatus() async -> Int32 {
        await withCheckedContinuation { continuation in
            let status = exit.withLock { state -> Int32? in
                if let status = state.status { return status }
                state.waiter = continuation
                return nil
            }
            if let status { continuation.resume(returning: status) }
        }
    }

    /// Signals the whole process group.
    func send(signal: Int32) {
        guard exit.withLock({ $0.status == nil }) else { return }
        kill(-pid, signal)
    }

    private static func readLines(_ fd: Int32, _ emit: (String) -> Void) {
        var pending = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                emit(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
        }
        if !pending.isEmpty { emit(String(decoding: pending, as: UTF8.self)) }
    }
}
