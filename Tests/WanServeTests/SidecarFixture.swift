import Foundation
import Hummingbird
import HummingbirdTesting
import WanCache
import WanCore
import WanTestSupport
@testable import WanServe

/// A sidecar over a fresh MODELS_ROOT whose manifest has one small local model, driven in
/// process: requests go straight to its router, no socket, no process.
struct SidecarFixture {
    let dir: Scratch
    let sidecar: Sidecar

    init(token: String? = nil, adminToken: String? = nil, limits: RateLimits = .off, listenHost: String = "127.0.0.1",
         blockingThreads: Int? = nil) throws {
        dir = try Scratch("wan-serve-app")
        let model = ModelFixture(modelID: "app@1.0", sizes: [("w.bin", 4096)], seed: 7)
        try model.write(to: dir.path + "/src")
        let manifest = try dir.write("models.toml", ModelFixture.manifest([model.manifestEntry(sources: ["local://\(dir.path)/src"])]))
        var config = try OrchestratorConfig.load(environment: ["MODELS_ROOT": dir.path + "/root"], manifestPath: manifest)
        if let blockingThreads { config.sidecarBlockingThreads = blockingThreads }
        let engine = try CacheEngine(config: config, registry: try ModelRegistry(manifestPath: manifest))
        sidecar = Sidecar(engine: engine, config: config, host: listenHost, port: 0, authToken: token, adminToken: adminToken, rateLimits: limits)
    }

    /// Runs `body` against the sidecar's router; `clock` is the rate limiter's (seconds since 1970).
    func test(clock: @escaping @Sendable () -> Int = { Int(Date().timeIntervalSince1970) },
              _ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        try await test(clock: clock) { client, _ in try await body(client) }
    }

    /// The same, with the sidecar's catalog (its blocking pool, its status board) at hand.
    func test(clock: @escaping @Sendable () -> Int = { Int(Date().timeIntervalSince1970) },
              _ body: @Sendable (any TestClientProtocol, ModelCatalog) async throws -> Void) async throws {
        let parts = try sidecar.assemble(clock: clock)
        let catalog = parts.catalog
        do {
            try await Application(router: parts.router).test(.router) { client in try await body(client, catalog) }
        } catch {
            parts.shutdown()
            sidecar.engine.shutdown()
            throw error
        }
        parts.shutdown()
        sidecar.engine.shutdown()
    }
}

extension TestResponse {
    /// The error envelope's code, if the body is one.
    var errorCode: String? {
        let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    var text: String { String(buffer: body) }
}
