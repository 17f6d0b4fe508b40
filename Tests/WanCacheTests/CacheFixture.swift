import Foundation
import WanCore
import WanTestSupport
@testable import WanCache

/// A MODELS_ROOT, a manifest and a cache engine over them.
struct CacheFixture {
    let dir: Scratch
    let root: String
    let manifestPath: String
    let engine: CacheEngine

    init(manifest: String, settings: CacheEngine.Settings? = nil, environment: [String: String] = [:], dir: Scratch? = nil) throws {
        let dir = try dir ?? Scratch("wan-cache")
        self.dir = dir
        root = dir.path + "/root"
        manifestPath = try dir.write("models.toml", manifest)
        var env = environment
        env["MODELS_ROOT"] = root
        let config = try OrchestratorConfig.load(environment: env, manifestPath: manifestPath)
        var tuned = settings ?? CacheEngine.Settings(config)
        tuned.persistBytes = settings?.persistBytes ?? tuned.persistBytes
        engine = try CacheEngine(config: config, registry: try ModelRegistry(manifestPath: manifestPath), settings: tuned)
    }

    func spec(_ id: String) throws -> ModelSpec { try engine.registry.spec(id) }

    func modelFile(_ id: String, _ path: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: engine.resolver.localDir(try spec(id)) + "/" + path))
    }
}
