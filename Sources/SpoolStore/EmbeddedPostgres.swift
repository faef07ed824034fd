import Foundation
import Logging
import PostgresNIO

#if canImport(Glibc)
import Glibc
#endif

/// A private PostgreSQL cluster under a data directory, run with the installed server's
/// `initdb` and `pg_ctl`: the broker's default when no database URL is given.
///
/// It listens on a Unix socket inside its directory only (no TCP port to collide with). When
/// the broker runs as root, the cluster runs as the unprivileged `postgres` user, since
/// PostgreSQL refuses to run as root.
package final class EmbeddedPostgres: Sendable {
    /// Where the cluster's files live: `<data-dir>/postgres`.
    package let clusterDirectory: String
    let binDirectory: String
    let runAsUser: String?
    let logger: Logger
    /// False when a cluster was already running in the directory: whoever started it stops it.
    let ownsServer: Bool

    /// The database role the broker connects as.
    package static let username = "spool"
    static let socketPort = 5432

    /// Starts (creating it first if need be) the cluster under `dataDirectory`, and waits until it accepts connections.
    /// `maxConnections` is passed at every start (it overrides postgresql.conf): brokers sharing
    /// the cluster each hold a pool.
    package init(dataDirectory: String, binDirectory: String? = nil, maxConnections: Int = 200, logger: Logger) throws(SpoolStoreError) {
        let dataDirectory = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        self.clusterDirectory = dataDirectory + "/postgres"
        if let binDirectory { self.binDirectory = binDirectory } else { self.binDirectory = try Self.findBinDirectory() }
        self.logger = logger
        self.runAsUser = getuid() == 0 ? "postgres" : nil

        let socketPath = clusterDirectory + "/.s.PGSQL.\(Self.socketPort)"
        // sockaddr_un holds 108 bytes including the terminator.
        guard socketPath.utf8.count < 108 else {
            throw .embeddedCluster(
                "The data directory '\(dataDirectory)' is too long for PostgreSQL's socket path (\(socketPath.utf8.count) bytes, at most 107); choose a shorter --data-dir."
            )
        }
        do {
            try FileManager.default.createDirectory(atPath: clusterDirectory, withIntermediateDirectories: true)
        } catch {
            throw .embeddedCluster("Cannot create the data directory '\(clusterDirectory)': \(error.localizedDescription)")
        }
        try Self.prepareOwnership(of: clusterDirectory, for: runAsUser)

        if !FileManager.default.fileExists(atPath: clusterDirectory + "/PG_VERSION") {
            logger.info("creating the embedded PostgreSQL cluster", metadata: ["directory": "\(clusterDirectory)"])
            try Self.run(
                binDirectory: self.binDirectory, "initdb",
                ["-D", clusterDirectory, "-U", Self.username, "--auth=trust", "--encoding=UTF8", "--locale=C"],
                as: runAsUser, in: clusterDirectory)
        }
        // Checked at every start, not only after initdb: a broker that died between the two must
        // not leave a cluster that would start with PostgreSQL's defaults.
        try Self.ensureSettings(clusterDirectory)
        Self.removeStalePIDFile(clusterDirectory, logger: logger)

        if Self.isRunning(clusterDirectory, binDirectory: self.binDirectory, as: runAsUser) {
            logger.notice(
                "the embedded PostgreSQL cluster is already running; using it and leaving it running at exit",
                metadata: ["directory": "\(clusterDirectory)"])
            self.ownsServer = false
        } else {
            // The socket-only settings are given on the command line as well: they hold whatever
            // postgresql.conf says.
            let options = [
                "-c listen_addresses=", "-c unix_socket_directories=\(Self.shellQuoted(clusterDirectory))", "-c port=\(Self.socketPort)",
                "-c max_connections=\(maxConnections)",
            ].joined(separator: " ")
            try Self.run(
                binDirectory: self.binDirectory, "pg_ctl",
                ["-D", clusterDirectory, "-l", clusterDirectory + "/server.log", "-o", options, "-w", "-t", "60", "-s", "start"],
                as: runAsUser, in: clusterDirectory)
            self.ownsServer = true
        }
        logger.info(
            "embedded PostgreSQL is ready",
            metadata: ["directory": "\(clusterDirectory)", "socket": "\(socketPath)", "log": "\(clusterDirectory)/server.log"])
    }

    /// How the broker connects: the Unix socket, as the cluster's superuser.
    package var configuration: PostgresClient.Configuration {
        .init(unixSocketPath: clusterDirectory + "/.s.PGSQL.\(Self.socketPort)", username: Self.username, password: nil, database: "postgres")
    }

    /// A URL for psql and other tools.
    package var url: String { "postgres://\(Self.username)@/postgres?host=\(clusterDirectory)" }

    /// Stops the server if this process started it; waits until it has shut down.
    package func stop() {
        guard ownsServer else { return }
        do {
            try Self.run(
                binDirectory: binDirectory, "pg_ctl", ["-D", clusterDirectory, "-m", "fast", "-w", "-s", "stop"], as: runAsUser, in: clusterDirectory)
            logger.info("embedded PostgreSQL stopped", metadata: ["directory": "\(clusterDirectory)"])
        } catch {
            logger.error("could not stop the embedded PostgreSQL cluster", metadata: ["error": "\(error)"])
        }
    }

    /// The line that marks Spool's settings in postgresql.conf.
    static let settingsMarker = "# Written by spool-broker: Unix socket only, inside this directory."

    /// Appends Spool's settings to postgresql.conf unless they are there already.
    static func ensureSettings(_ clusterDirectory: String) throws(SpoolStoreError) {
        let path = clusterDirectory + "/postgresql.conf"
        let current = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        guard !current.contains(settingsMarker) else { return }
        // Small and quiet defaults for a laptop; a production deployment gives a database URL.
        let settings = """

            \(settingsMarker)
            listen_addresses = ''
            unix_socket_directories = '\(clusterDirectory.replacingOccurrences(of: "'", with: "''"))'
            port = \(socketPort)
            fsync = on
            # A queue's rows die fast: look for tables to vacuum every 10 s, not every minute,
            # so dead rows are reused before the table grows (BENCHMARKS.md, churn).
            autovacuum_naptime = 10s

            """
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(settings.utf8))
            try handle.close()
        } catch {
            throw .embeddedCluster("Cannot write '\(path)': \(error.localizedDescription)")
        }
    }

    /// Removes `postmaster.pid` (and its socket's lock file) when the process it names is not a
    /// running PostgreSQL: after a crash or a reboot the number may belong to another process, and
    /// PostgreSQL would then refuse to start.
    static func removeStalePIDFile(_ clusterDirectory: String, logger: Logger) {
        let pidFile = clusterDirectory + "/postmaster.pid"
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8) else { return }
        let pid = text.split(separator: "\n").first.flatMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
        if let pid, pid > 0, kill(pid, 0) == 0 || errno == EPERM {
            let command = (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            if command == nil || command == "postgres" || command == "postmaster" { return }
        }
        logger.notice(
            "removing a stale postmaster.pid: the process it names is not a running PostgreSQL",
            metadata: ["directory": "\(clusterDirectory)", "pid": "\(pid.map(String.init) ?? "?")"])
        unlink(pidFile)
        unlink(clusterDirectory + "/.s.PGSQL.\(socketPort).lock")
    }

    /// `text` in single quotes for the shell that pg_ctl starts postgres with.
    static func shellQuoted(_ text: String) -> String {
        "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// The directory with `initdb` and `pg_ctl`: `$PATH` first, then Debian's `/usr/lib/postgresql/<newest>/bin`.
    static func findBinDirectory() throws(SpoolStoreError) -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for directory in path.split(separator: ":").map(String.init)
        where FileManager.default.isExecutableFile(atPath: directory + "/initdb")
            && FileManager.default.isExecutableFile(atPath: directory + "/pg_ctl")
        {
            return directory
        }
        let debian = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: debian)) ?? []).compactMap(Int.init).sorted()
        for version in versions.reversed() where FileManager.default.isExecutableFile(atPath: "\(debian)/\(version)/bin/initdb") {
            return "\(debian)/\(version)/bin"
        }
        throw .embeddedCluster(
            "PostgreSQL's initdb and pg_ctl were not found on PATH or under /usr/lib/postgresql: install the server (apt-get install postgresql) or give --database-url."
        )
    }

    private static func prepareOwnership(of directory: String, for user: String?) throws(SpoolStoreError) {
        guard let user else { return }
        guard let account = getpwnam(user) else {
            throw .embeddedCluster(
                "PostgreSQL refuses to run as root and there is no '\(user)' user to run it as: create one (apt-get install postgresql does), run spool-broker as another user, or give --database-url."
            )
        }
        let (uid, gid) = (account.pointee.pw_uid, account.pointee.pw_gid)
        var status = stat()
        if stat(directory, &status) == 0, status.st_uid != uid {
            guard chown(directory, uid, gid) == 0 else {
                throw .embeddedCluster("Cannot hand '\(directory)' to the '\(user)' user (chown failed).")
            }
        }
        chmod(directory, 0o700)
        // The server runs as that user: every parent directory must let it through.
        var parent = URL(fileURLWithPath: directory).deletingLastPathComponent().path
        while parent != "/" && !parent.isEmpty {
            var parentStatus = stat()
            if stat(parent, &parentStatus) == 0, parentStatus.st_uid != uid, parentStatus.st_mode & 0o001 == 0 {
                throw .embeddedCluster(
                    "The '\(user)' user that runs the embedded PostgreSQL cannot enter '\(parent)': choose a --data-dir it can reach (for example under /var/lib or /tmp), or give --database-url."
                )
            }
            parent = URL(fileURLWithPath: parent).deletingLastPathComponent().path
        }
    }

    private static func isRunning(_ clusterDirectory: String, binDirectory: String, as user: String?) -> Bool {
        (try? run(binDirectory: binDirectory, "pg_ctl", ["-D", clusterDirectory, "status"], as: user, in: clusterDirectory)) != nil
    }

    @discardableResult
    static func run(
        binDirectory: String, _ tool: String, _ arguments: [String], as user: String?, in directory: String
    ) throws(SpoolStoreError) -> String {
        let command = (user.map { ["/usr/sbin/runuser", "-u", $0, "--"] } ?? []) + ["\(binDirectory)/\(tool)"] + arguments
        let (status, output) = try ChildProcess.run(command, in: directory)
        guard status == 0 else {
            throw .embeddedCluster(
                "\(tool) \(arguments.joined(separator: " ")) failed (exit \(status)): \(output.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return output
    }
}
