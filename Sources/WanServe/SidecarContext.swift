import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// The request context of every route: the client's address (for rate limits and logs), the
/// WebSocket upgrade of `/ws`, and the encoder of every JSON answer (``SidecarJSON``).
struct SidecarContext: RequestContext, WebSocketRequestContext, RemoteAddressRequestContext {
    var coreContext: CoreRequestContextStorage
    let webSocket: WebSocketHandlerReference<Self>
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        webSocket = .init()
        remoteAddress = source.channel.remoteAddress
    }

    var responseEncoder: JSONEncoder { SidecarJSON.encoder }

    /// The client's IP address, or "unknown".
    var clientIP: String { remoteAddress?.ipAddress ?? "unknown" }
}

/// A group of endpoints over the same parts (hummingbird's `RouteCollection`): it adds its
/// routes, relative to where ``Sidecar`` mounts the collection.
protocol Controller: Sendable {
    func addRoutes(to routes: RouteCollection<SidecarContext>)
}

extension Controller {
    /// This controller's routes, for `router.addRoutes(_:atPath:)`.
    var routes: RouteCollection<SidecarContext> {
        let collection = RouteCollection(context: SidecarContext.self)
        addRoutes(to: collection)
        return collection
    }
}
