import Foundation
import Hummingbird
import HummingbirdWebSocket
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
    /// With an admin token, the admin routes need it (the user token gets 403).
    public let adminToken: String?
    /// Whether `/health/models` and `/metrics` need the token too (open by default).
    public let protectProbes: Bool
    public let rateLimits: RateLimits
    /// How often the GC and health schedules wake to see whether a run is due.
    public let scheduleInterval: Duration
    public let logger: Logger

    public init(engine: CacheEngine, config: OrchestratorConfig, host: String, port: Int, authToken: String?, adminToken: String? = nil,
                protectProbes: Bool = false, rateLimits: RateLimits = RateLimits(), scheduleInterval: Duration = .seconds(60), logger: Logger = Logger(label: "wan.serve")) {
        self.scheduleInterval = scheduleInterval
        self.engine = engine
        self.config = config
        self.host = host
        self.port = port
        self.authToken = authToken
        self.adminToken = adminToken
        self.protectProbes = protectProbes
        self.rateLimits = rateLimits
        self.logger = logger
    }

    /// Serves until SIGTERM or SIGINT, then finishes the requests in flight and returns.
    public func run() async throws {
        let router = Router(context: SidecarContext.self)
        router.middlewares.add(EnvelopeMiddleware(logger: logger))
        router.middlewares.add(RateLimitMiddleware(limits: rateLimits))
        if authToken != nil || adminToken != nil { router.middlewares.add(BearerAuthMiddleware(token: authToken, adminToken: adminToken, protectProbes: protectProbes)) }
        let events = EventHub()
        let downloads = DownloadManager(engine: engine, events: events)
        defer { downloads.shutdown() }   // SIGTERM: transfers stop, partial bytes stay for the next run
        let settings = SidecarSettings(config: config, state: try engine.state())
        downloads.maxConcurrent = settings.current.maxConcurrentDownloads
        let catalog = ModelCatalog(engine: engine, downloads: downloads, settings: settings)
        let checks = HealthChecks(catalog: catalog)
        var scheduleLogger = logger
        scheduleLogger[metadataKey: "component"] = "maintenance"
        let maintenance = Maintenance(catalog: catalog, checks: checks, tick: scheduleInterval, logger: scheduleLogger)
        Routes(catalog: catalog, config: config, checks: checks, maintenance: maintenance).register(on: router)
        router.ws("/ws") { _, _ in .upgrade([:]) } onUpgrade: { inbound, outbound, _ in
            // Server → client only: client frames are read (and dropped) so a close is seen.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { for try await _ in inbound {} }
                group.addTask { for await frame in events.subscribe() { try await outbound.write(.text(frame)) } }
                try await group.next()
                group.cancelAll()
            }
        }
        let app = Application(router: router,
                              server: .http1WebSocketUpgrade(webSocketRouter: router, configuration: .init(autoPing: .enabled(timePeriod: .seconds(30)))),
                              configuration: .init(address: .hostname(host, port: port), serverName: "wan"),
                              logger: logger)
        // The background work lives as long as the server: cancelled when it stops.
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await AvailabilityWatcher(catalog: catalog).run() }
            group.addTask { await maintenance.run() }
            try await app.runService()
            downloads.shutdown()   // at once: the background tasks may take a moment to notice
            group.cancelAll()
        }
    }
}
