import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The request context of every route: the client's address (for rate limits and logs) and
/// the WebSocket upgrade of `/ws`.
struct SidecarContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let webSocket: WebSocketHandlerReference<Self>
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress
    }

    /// The client's IP address, or "unknown".
    var clientIP: String { remoteAddress?.ipAddress ?? "unknown" }
}
