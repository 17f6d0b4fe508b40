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

    struct Check: Encodable {
        enum Level: String, Encodable { case ok, warning, failed }
        let name: String
        let level: Level
        let detail: String
    }

    struct LockReport: Encodable {
        let name: String
        let held: Bool
        let owner: String?
    }

    struct Report: Encodable {
        let ok: Bool
        let checks: [Check]
        let locks: [LockReport]
        let sources: [SourceCheck]
    }

    func execute(_ output: Output) async throws {
        var checks: [Check] = []
        func add(_ name: String, _ level: Check.Level, _ detail: String) { checks.append(Check(name: name, level: level, detail: detail)) }

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

        var locks: [LockReport] = []
        if let resolver = try? config.resolver() {
            checkPaths(resolver, add)
            if let space = try? FileSystem.space(at: resolver.modelsRoot) {
                var detail = "\(ByteSize.format(space.availableBytes)) available of \(ByteSize.format(space.totalBytes))"
                var level = Check.Level.ok
                if let registry, let engine = try? CacheEngine(config: config, registry: registry) {
                    let needed = registry.manifest.models.compactMap { try? engine.estimateDownloadSize($0.narrowed(to: $0.defaultVariant)) }.reduce(0, +)
                    detail += "; \(ByteSize.format(needed)) still to download for every default variant"
                    if needed > space.availableBytes { level = .warning }
                }
                add("free space", level, detail)
            }
            do {
                let store = try StateStore(resolver: resolver)
                add("state database", .ok, "\(store.path): \(try store.allUsage().count) models tracked")
            } catch {
                add("state database", .failed, "\(resolver.statePath): \(error)")
            }
            locks = LockManager(resolver: resolver).inventory().map { LockReport(name: $0.name, held: $0.held, owner: $0.owner) }
            let held = locks.filter(\.held)
            add("locks", .ok, "\(locks.count) lock files, \(held.count) held" + (held.isEmpty ? "" : ": " + held.map(\.name).joined(separator: ", ")))
            let partials = (try? DiskUsage.measure(resolver))?.partialBytes ?? 0
            add("partial downloads", .ok, "\(ByteSize.format(partials)) in \(resolver.tmpDir) (resumable; `wan models gc --aggressive` removes abandoned ones)")
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

    private func checkPaths(_ resolver: ModelResolver, _ add: (String, Check.Level, String) -> Void) {
        let root = resolver.modelsRoot
        guard let info = try? FileSystem.info(root) else {
            add("MODELS_ROOT", .warning, "\(root) does not exist yet (created on first ensure)")
            return
        }
        guard info.kind == .directory else {
            add("MODELS_ROOT", .failed, "\(root) is not a directory")
            return
        }
        let writable = FileSystem.isAccessible(root, mode: 2)
        add("MODELS_ROOT", writable ? .ok : .failed, "\(root) " + (writable ? "is writable" : "is not writable by this user"))
        for directory in [resolver.modelsDir, resolver.blobsDir, resolver.tmpDir, resolver.locksDir, resolver.stateDir] {
            guard FileManager.default.fileExists(atPath: directory) else { continue }
            if !FileSystem.isAccessible(directory, mode: 2) { add("permissions", .failed, "\(directory) is not writable by this user") }
        }
    }
}
