import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanFS
import WanSources
import WanSystem

/// `wan models diagnose`: everything that could be wrong, checked in one go.
struct Diagnose: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check configuration, paths, permissions, free space, the state database, locks, partial downloads and sources.",
        discussion: "Exits 1 when any check fails (warnings do not fail). Secret values are never shown.")

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Skip contacting the sources.")
    var offline = false

    struct Report: Encodable {
        let ok: Bool
        let checks: [CacheHealth.Check]
        let locks: [CacheHealth.LockEntry]
        let sources: [SourceCheck]
    }

    func execute(_ output: Output) async throws {
        var checks: [CacheHealth.Check] = []
        func add(_ name: String, _ level: CacheHealth.Level, _ detail: String) { checks.append(CacheHealth.Check(name, level, detail)) }

        let config = try global.loadConfig()
        output.secrets = config.credentials.secretValues
        add("config file", .ok, config.configFile ?? "none (defaults, environment and flags)")
        add("credentials", .ok, "\(config.credentials)")
        add("libraries", .ok, "libcurl \(CurlLibrary.info.version), \(SHA256Hasher.libraryVersion), libfuse \(FuseLibrary.version)\(FuseLibrary.hasPassthrough ? " (passthrough)" : " (no passthrough: libfuse < 3.17)")")

        var registry: ModelRegistry?
        do {
            let loaded = try ModelRegistry(manifestPath: config.manifestPath)
            registry = loaded
            add("manifest", .ok, "\(config.manifestPath): \(loaded.listModels().count) models")
        } catch {
            add("manifest", .failed, error.description)
        }

        // The cache's own checks: the same as the Model Availability API's health report.
        var locks: [CacheHealth.LockEntry] = []
        if let resolver = try? config.resolver() {
            let engine = registry.flatMap { try? CacheEngine(config: config, registry: $0) }
            let health = CacheHealth(resolver: resolver, engine: engine)
            let report = health.run()
            checks += report.checks
            locks = report.locks
            if let registry, engine != nil { checks.append(health.models(registry.manifest.models.map { $0.narrowed(to: $0.defaultVariant) })) }
        } else {
            add("MODELS_ROOT", .failed, "not set; export MODELS_ROOT=/path/to/models or pass --models-root")
        }

        let fuse = FileManager.default.fileExists(atPath: "/dev/fuse")
        add("/dev/fuse", fuse ? .ok : .warning, fuse ? "present (mounting possible)" : "missing: the mount cannot work on this machine")

        var sourceChecks: [SourceCheck] = []
        if !offline, let registry {
            let factory = SourceFactory(config: config, manifestDirectory: registry.manifestDirectory)
            var seen = Set<String>()
            for spec in registry.manifest.models {
                let fresh = spec.sources.filter { seen.insert($0.raw).inserted }
                sourceChecks += await SourceProbe.check(fresh, factory: factory, sample: spec.files.first?.path)
            }
            let failed = sourceChecks.filter { $0.errorCode != nil }
            add("sources", failed.isEmpty ? .ok : .warning,
                "\(sourceChecks.count - failed.count) of \(sourceChecks.count) answered" + (failed.isEmpty ? "" : "; failing: " + failed.map(\.source).joined(separator: ", ")))
        }

        let ok = !checks.contains { $0.level == .failed }
        if global.json { try output.emit(Report(ok: ok, checks: checks, locks: locks, sources: sourceChecks)) }
        for check in checks {
            output.say("[\(check.level.rawValue.uppercased().padding(toLength: 7, withPad: " ", startingAt: 0))] \(check.name): \(check.detail)")
        }
        if !ok { throw ExitCode(1) }
    }
}
