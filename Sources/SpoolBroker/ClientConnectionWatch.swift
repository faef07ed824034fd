import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTypes

/// Notices when a client hangs up (closes its connection, or its sending side) while the broker
/// still works on its request, so a long-poll stops waiting instead of claiming a job for no one.
///
/// One per connection, in the channel pipeline after the HTTP decoder. The server allows remote
/// half-closure, so a client that goes away shows as `inputClosed` before the channel closes.
final class ClientConnectionWatch: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    private struct State {
        var gone = false
        var onGone: (@Sendable () -> Void)?
    }

    // Written on the event loop, read and set by request handlers on other threads.
    private let state = NIOLockedValueBox(State())

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed { markGone() }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        markGone()
        context.fireChannelInactive()
    }

    /// Whether the client has hung up.
    var isGone: Bool { state.withLockedValue { $0.gone } }

    /// Runs `action` once when the client hangs up (at once if it has); replaces an earlier action.
    func whenGone(_ action: @escaping @Sendable () -> Void) {
        let runNow = state.withLockedValue { state -> Bool in
            if state.gone { return true }
            state.onGone = action
            return false
        }
        if runNow { action() }
    }

    /// Forgets the action: the request it was for has ended.
    func clearWhenGone() {
        state.withLockedValue { $0.onGone = nil }
    }

    private func markGone() {
        let action = state.withLockedValue { state -> (@Sendable () -> Void)? in
            state.gone = true
            defer { state.onGone = nil }
            return state.onGone
        }
        action?()
    }
}

extension BrokerRequestContext {
    /// The watch on this request's connection, or nil when it cannot be found (a test router).
    func connectionWatch() async -> ClientConnectionWatch? {
        guard let channel else { return nil }
        return try? await channel.pipeline.handler(type: ClientConnectionWatch.self).get()
    }
}
