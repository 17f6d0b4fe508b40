import Foundation
import Hummingbird
import HummingbirdWebSocket
import NIOPosix
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
    /// With a token, every `/api/v1` route needs `Authorization: Bearer TOKEN`. Without one,
    /// only requests for loopback names and the listen address are answered.
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

    /// Whether `host` names this machine only: `localhost`, 127.0.0.0/8 or `::1`.
    public static func isLoopback(_ host: String) -> Bool { LocalNames.isLoopback(LocalNames.bare(host)) }

    /// The parts of a running sidecar: the router, and what works beside it.
    struct Parts {
        let router: Router<SidecarContext>
        let downloads: DownloadManager
        let catalog: ModelCatalog
        let maintenance: Maintenance

        /// Stops the downloads (their partial bytes stay for the next run) and the blocking pool:
        /// queued work is dropped; work running (a long re-hash) is not waited for.
        func shutdown() {
            downloads.shutdown()
            catalog.blocking.shutdownGracefully { _ in }
            catalog.boardThread.shutdownGracefully { _ in }
        }
    }

    /// Every route with its middleware, over this sidecar's engine: what ``run(onListening:)``
    /// serves, and what the in-process tests drive.
    func assemble(clock: @escaping @Sendable () -> Int = { Int(Date().timeIntervalSince1970) }) throws -> Parts {
        let router = Router(context: SidecarContext.self)
        router.middlewares.add(EnvelopeMiddleware(logger: logger))
        if authToken == nil { router.middlewares.add(LocalOnlyMiddleware(listenHost: host)) }
        router.middlewares.add(RateLimitMiddleware(limits: rateLimits, clock: clock))
        if authToken != nil || adminToken != nil { router.middlewares.add(BearerAuthMiddleware(token: authToken, adminToken: adminToken, protectProbes: protectProbes)) }
        let events = EventHub()
        let blocking = NIOThreadPool(numberOfThreads: config.sidecarBlockingThreads)
        blocking.start()
        let downloads = DownloadManager(engine: engine, events: events, blocking: blocking)
        let settings = SidecarSettings(config: config, state: try engine.state())
        downloads.maxConcurrent = settings.current.maxConcurrentDownloads
        let boardThread = NIOThreadPool(numberOfThreads: 1)
        boardThread.start()
        let catalog = ModelCatalog(engine: engine, downloads: downloads, settings: settings, blocking: blocking, boardThread: boardThread)
        let checks = HealthChecks(catalog: catalog)
        var scheduleLogger = logger
        scheduleLogger[metadataKey: "component"] = "maintenance"
        let maintenance = Maintenance(catalog: catalog, checks: checks, tick: scheduleInterval, logger: scheduleLogger)
        router.addRoutes(ProbeController(catalog: catalog, config: config, maintenance: maintenance).routes)
        router.addRoutes(StatusController(catalog: catalog, config: config).routes, atPath: "/api/v1/models")
        router.addRoutes(HealthController(checks: checks, maintenance: maintenance).routes, atPath: "/api/v1/models/health")
        router.addRoutes(AnalyticsController(catalog: catalog).routes, atPath: "/api/v1/models/analytics")
        router.addRoutes(DownloadController(catalog: catalog).routes, atPath: "/api/v1/models/download")
        router.addRoutes(FallbackController(catalog: catalog).routes, atPath: "/api/v1/models/fallback")
        router.addRoutes(CleanupController(catalog: catalog).routes, atPath: "/api/v1/models/cleanup")
        router.addRoutes(ConfigController(catalog: catalog, config: config).routes, atPath: "/api/v1/config")
        router.ws("/ws") { _, _ in .upgrade([:]) } onUpgrade: { inbound, outbound, _ in
            // Server → client only: client frames are read (and dropped) so a close is seen.
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { for try await _ in inbound {} }
                group.addTask { for await frame in events.subscribe() { try await outbound.write(.text(frame)) } }
                try await group.next()
                group.cancelAll()
            }
        }
        return Parts(router: router, downloads: downloads, catalog: catalog, maintenance: maintenance)
    }

    /// Serves until SIGTERM or SIGINT, then finishes the requests in flight and returns.
    /// `onListening` gets the address and the port bound (the one asked for, or the one the
    /// system chose for port 0).
    public func run(onListening: @escaping @Sendable (String, Int) -> Void = { _, _ in }) async throws {
        let parts = try assemble()
        let app = Application(router: parts.router,
                              server: .http1WebSocketUpgrade(webSocketRouter: parts.router,
                                                             configuration: .init(ws: .init(autoPing: .enabled(timePeriod: .seconds(30))))),
                              configuration: .init(address: .hostname(host, port: port), serverName: "wan"),
                              onServerRunning: { [host] channel in onListening(host, channel.localAddress?.port ?? port) },
                              logger: logger)
        // The background work lives as long as the server: cancelled when it stops.
        let (catalog, maintenance, downloads) = (parts.catalog, parts.maintenance, parts.downloads)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await AvailabilityWatcher(catalog: catalog).run() }
                group.addTask { await maintenance.run() }
                try await app.runService()
                downloads.shutdown()   // at once: the background tasks may take a moment to notice
                group.cancelAll()
            }
        } catch {
            parts.shutdown()
            throw error
        }
        parts.shutdown()   // SIGTERM: transfers stop, partial bytes stay for the next run
    }
}
