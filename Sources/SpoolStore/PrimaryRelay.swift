import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO
import SpoolCore

/// Follows the primary among several PostgreSQL servers, for a pool that knows only one address.
///
/// PostgresNIO's pool connects to one host. The relay listens on 127.0.0.1 and, for each
/// connection the pool opens, asks the URL's servers in turn (the last primary first) whether they
/// answer and are what `target_session_attrs` asks (a short direct connection:
/// `pg_is_in_recovery()`, `transaction_read_only`), then joins the pool's connection to that
/// server byte for byte (TLS included, end to end). After a failover the old primary's
/// connections break, the pool opens new ones, and they reach the promoted server.
package final class PrimaryRelay: Sendable {
    let url: DatabaseURL
    let logger: Logger
    let channel: any Channel
    /// Index in `url.hosts` of the server that took the last connection: asked first next time.
    private let lastPrimary = NIOLockedValueBox<Int>(0)

    /// How long one host has to connect, log in and say what it is.
    static let probeTimeout: Duration = .seconds(5)

    /// The port on 127.0.0.1 the pool connects to.
    package var port: Int { channel.localAddress?.port ?? 0 }

    /// The pool's configuration: this relay's address, the URL's user, database and TLS.
    package var configuration: PostgresClient.Configuration { url.relayed(port: port) }

    private init(url: DatabaseURL, logger: Logger, channel: any Channel) {
        self.url = url
        self.logger = logger
        self.channel = channel
    }

    /// Starts a relay for `url`'s servers; close it when the pool has stopped.
    package static func start(_ url: DatabaseURL, logger: Logger) async throws -> PrimaryRelay {
        let relay = NIOLockedValueBox<PrimaryRelay?>(nil)
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Nothing is read from the pool's connection until its server is joined to it.
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                if let relay = relay.withLockedValue({ $0 }) { relay.join(inbound) } else { inbound.close(promise: nil) }
                return inbound.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let started = PrimaryRelay(url: url, logger: logger, channel: channel)
        relay.withLockedValue { $0 = started }
        logger.info(
            "following the primary among the database hosts",
            metadata: [
                "hosts": "\(url.hosts.map(\.description).joined(separator: ","))", "target_session_attrs": "\(url.sessionAttributes.rawValue)",
            ])
        return started
    }

    package func close() async {
        try? await channel.close()
    }

    /// Finds a server for one of the pool's connections and joins the two; closes it if none answers.
    private func join(_ inbound: any Channel) {
        Task {
            do {
                let host = try await self.findServer()
                let outbound = try await ClientBootstrap(group: inbound.eventLoop)
                    .connectTimeout(.seconds(3))
                    .channelOption(.socketOption(.so_keepalive), value: 1)
                    .channelInitializer { outbound in
                        // Both channels share one event loop: each half hands its reads to the other directly.
                        do {
                            let (toServer, toPool) = RelayHalf.matchedPair()
                            try outbound.pipeline.syncOperations.addHandler(toPool)
                            try inbound.pipeline.syncOperations.addHandler(toServer)
                            return outbound.eventLoop.makeSucceededVoidFuture()
                        } catch {
                            return outbound.eventLoop.makeFailedFuture(error)
                        }
                    }
                    .connect(host: host.name, port: host.port).get()
                _ = outbound
                try await inbound.setOption(.autoRead, value: true).get()
            } catch {
                self.logger.warning(
                    "no database host could take a connection", metadata: ["error": "\(String(reflecting: error))"])
                inbound.close(promise: nil)
            }
        }
    }

    /// The first server, starting from the last one that took a connection, that answers and is
    /// what the URL asks for.
    func findServer() async throws -> DatabaseURL.Host {
        let hosts = url.hosts
        let first = lastPrimary.withLockedValue { $0 }
        var reasons: [String] = []
        for offset in hosts.indices {
            let index = (first + offset) % hosts.count
            let host = hosts[index]
            do {
                // A host that accepts the connection and then answers nothing (frozen, half-open)
                // must not hold the pool's connection: the next host is asked instead.
                guard let verdict = try await result(within: Self.probeTimeout, of: { try await self.refusal(of: host) }) else {
                    reasons.append("\(host): no answer within \(Self.probeTimeout)")
                    continue
                }
                if let refusal = verdict {
                    reasons.append("\(host): \(refusal)")
                    continue
                }
                if index != first {
                    logger.notice("the database primary is now another host", metadata: ["host": "\(host)"])
                    lastPrimary.withLockedValue { $0 = index }
                }
                return host
            } catch {
                reasons.append("\(host): \(String(describing: error))")
            }
        }
        throw PrimaryNotFound(reasons: reasons)
    }

    /// Why `host` may not take connections (a standby, read-only), or nil if it may.
    private func refusal(of host: DatabaseURL.Host) async throws -> String? {
        let connection = try await PostgresConnection.connect(
            on: MultiThreadedEventLoopGroup.singleton.next(), configuration: try url.probe(host), id: 0, logger: logger)
        defer { Task { try? await connection.close() } }
        let rows = try await connection.rows(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'", logger: logger, file: #fileID, line: #line)
        guard let (standby, readOnly) = try rows.elements.first?.decode((Bool, Bool).self) else { return "no answer" }
        switch url.sessionAttributes {
        case .any: return nil
        case .primary: return standby ? "a standby" : nil
        case .readWrite: return standby ? "a standby" : readOnly ? "read-only" : nil
        }
    }
}

/// None of the database hosts could take a connection.
struct PrimaryNotFound: Error, CustomStringConvertible {
    let reasons: [String]
    var description: String { "No database host is a primary that answers: \(reasons.joined(separator: "; "))" }
}

/// One side of a relayed connection: what it reads is written to its partner's channel, and reads
/// wait while the partner cannot take more (so a slow side holds the other back, not memory).
final class RelayHalf: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: RelayHalf?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    static func matchedPair() -> (RelayHalf, RelayHalf) {
        let first = RelayHalf()
        let second = RelayHalf()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ data: NIOAny) { context?.write(data, promise: nil) }
    private func partnerFlush() { context?.flush() }
    private func partnerClose() { context?.close(promise: nil) }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    private func partnerBecameWritable() {
        if pendingRead {
            pendingRead = false
            context?.read()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { partner?.partnerWrite(data) }
    func channelReadComplete(context: ChannelHandlerContext) { partner?.partnerFlush() }
    func channelInactive(context: ChannelHandlerContext) { partner?.partnerClose() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.partnerClose()
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { partner?.partnerBecameWritable() }
    }

    func read(context: ChannelHandlerContext) {
        if partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
