import Foundation
import Hummingbird
import Logging
import WanCache
import WanCore

/// `wan serve`: the HTTP API, metrics and health over the cache engine that the CLI and the
/// mount share through MODELS_ROOT.
public struct Sidecar: Sendable {
    public let engine: CacheEngine
    public let config: OrchestratorConfig
    public let host: String
    public let port: Int
    /// With a token, every `/api/v1` route needs `Authorization: Bearer TOKEN`.
    public let authToken: String?
    public let logger: Logger

    public init(engine: CacheEngine, config: OrchestratorConfig, host: String, port: Int, authToken: String?,
                logger: Logger = Logger(label: "wan.serve")) {
        self.engine = engine
        self.config = config
        self.host = host
        self.port = port
        self.authToken = authToken
        self.logger = logger
    }

    /// Serves until SIGTERM or SIGINT, then finishes the requests in flight and returns.
    public func run() async throws {
        let router = Router()
        router.middlewares.add(EnvelopeMiddleware(logger: logger))
        if let authToken { router.middlewares.add(BearerAuthMiddleware(token: authToken)) }
        let events = EventHub()
        let downloads = DownloadManager(engine: engine, events: events)
        Routes(catalog: ModelCatalog(engine: engine, downloads: downloads), config: config).register(on: router)
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "wan"),
                              logger: logger)
        try await app.runService()
    }
}
