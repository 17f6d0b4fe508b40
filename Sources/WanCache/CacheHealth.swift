import Foundation
import WanCore
import WanSources
import WanSystem

/// The health checks of a cache, one implementation for `wan models diagnose` and for the
/// Model Availability API's health report (`GET /api/v1/models/health`): MODELS_ROOT and its
/// directories, free space against what the manifest still needs, the state database, locks,
/// partial downloads (abandoned ones counted), and each model's integrity.
///
/// Every method blocks (it stats, walks and opens files): call it from a plain thread or
/// through a blocking pool.
public struct CacheHealth: Sendable {
    public enum Level: String, Codable, Sendable { case ok, warning, failed }

    /// One finding, with what was seen (never a secret).
    public struct Check: Codable, Sendable, Equatable {
        public let name: String
        public let level: Level
        public let detail: String

        public init(_ name: String, _ level: Level, _ detail: String) {
            self.name = name
            self.level = level
            self.detail = detail
        }
    }

    /// A lock file, and whether a live process holds it.
    public struct LockEntry: Codable, Sendable, Equatable {
        public let name: String
        public let held: Bool
        public let owner: String?
    }

    /// What the cache-wide checks found.
    public struct Report: Sendable {
        public var checks: [Check] = []
        public var locks: [LockEntry] = []
        /// Partial downloads no process is fetching, untouched for ``CacheHealth/abandonedAfter``.
        public var abandonedPartials = 0
        /// Lock files no process holds (harmless; `wan models gc` leaves them).
        public var idleLockFiles: Int { locks.filter { !$0.held }.count }
        public var ok: Bool { !checks.contains { $0.level == .failed } }
    }

    /// A model's health from its status: the words the health report and diagnose use.
    public struct ModelHealth: Sendable {
        public let status: ModelStatus
        /// `healthy` (complete and verified), `corrupted` (a file failed its digest) or `missing`.
        public let health: String
        /// `missing: PATH` and `checksum mismatch: PATH`, one per file.
        public let issues: [String]
        /// `checksum_mismatch` and/or `missing_file`.
        public let corruptionTypes: [String]
        /// The command that repairs it, if anything is wrong.
        public let repairSuggestions: [String]

        public init(_ status: ModelStatus, modelID: String) {
            self.status = status
            health = Self.health(status.state)
            let failed = status.files.filter { $0.state == .corrupt }.map(\.path)
            issues = status.missingFiles.map { "missing: \($0)" } + failed.map { "checksum mismatch: \($0)" }
            corruptionTypes = (failed.isEmpty ? [] : ["checksum_mismatch"]) + (status.missingFiles.isEmpty ? [] : ["missing_file"])
            repairSuggestions = !failed.isEmpty ? ["wan models verify --model \(modelID) --fix"]
                : status.missingFiles.isEmpty ? [] : ["wan models ensure --only \(modelID)"]
        }

        public static func health(_ state: ModelState) -> String {
            switch state {
            case .complete: "healthy"
            case .corrupt: "corrupted"
            case .verifying, .partial, .notPresent: "missing"
            }
        }

        public var isHealthy: Bool { health == "healthy" }
    }

    /// Seconds after which a partial download nobody fetches counts as abandoned.
    public static let abandonedAfter: Double = 3600

    public let resolver: ModelResolver
    /// The engine over the manifest, when it loaded: free space is then checked against what
    /// the manifest still needs, and models can be checked.
    public let engine: CacheEngine?

    public init(resolver: ModelResolver, engine: CacheEngine?) {
        self.resolver = resolver
        self.engine = engine
    }

    public init(engine: CacheEngine) {
        self.init(resolver: engine.resolver, engine: engine)
    }

    /// Every cache-wide check, in the order diagnose prints them.
    ///
    /// - Parameter probeLocks: whether to find out which locks are held, by taking each one
    ///   for an instant (as diagnose and the scheduled health pass do). A report served per
    ///   request must not (a mount opening a file that instant would miss its lock), so it
    ///   leaves the lock inventory and the abandoned partial downloads out.
    public func run(now: Date = Date(), probeLocks: Bool = true) -> Report {
        var report = Report()
        report.checks += modelsRoot()
        if let space = freeSpace() { report.checks.append(space) }
        report.checks.append(stateDatabase())
        if probeLocks {
            report.locks = LockManager(resolver: resolver).inventory().map { LockEntry(name: $0.name, held: $0.held, owner: $0.owner) }
            let held = report.locks.filter(\.held)
            report.checks.append(Check("locks", .ok, "\(report.locks.count) lock files, \(held.count) held"
                                       + (held.isEmpty ? "" : ": " + held.map(\.name).joined(separator: ", "))))
        }
        let partials = partialDownloads(now: now, probeLocks: probeLocks)
        report.abandonedPartials = partials.abandoned
        report.checks.append(partials.check)
        return report
    }

    /// MODELS_ROOT exists (or can be created), is a directory, and this user can write it and
    /// the directories under it.
    public func modelsRoot() -> [Check] {
        let root = resolver.modelsRoot
        guard let info = try? FileSystem.info(root) else {
            return [Check("MODELS_ROOT", .warning, "\(root) does not exist yet (created on first ensure)")]
        }
        guard info.kind == .directory else { return [Check("MODELS_ROOT", .failed, "\(root) is not a directory")] }
        let writable = FileSystem.isAccessible(root, mode: 2)
        var checks = [Check("MODELS_ROOT", writable ? .ok : .failed, "\(root) " + (writable ? "is writable" : "is not writable by this user"))]
        for directory in [resolver.modelsDir, resolver.blobsDir, resolver.tmpDir, resolver.locksDir, resolver.stateDir] {
            guard FileManager.default.fileExists(atPath: directory) else { continue }
            if !FileSystem.isAccessible(directory, mode: 2) { checks.append(Check("permissions", .failed, "\(directory) is not writable by this user")) }
        }
        return checks
    }

    /// Free space on MODELS_ROOT's filesystem, a warning when the manifest's default variants
    /// still need more. Nil when MODELS_ROOT does not exist.
    public func freeSpace() -> Check? {
        guard let space = try? FileSystem.space(at: resolver.modelsRoot) else { return nil }
        var detail = "\(ByteSize.format(space.availableBytes)) available of \(ByteSize.format(space.totalBytes))"
        var level = Level.ok
        if let engine {
            let needed = engine.registry.manifest.models.reduce(Int64(0)) { total, spec in
                total.addingClamped((try? engine.estimateDownloadSize(spec.narrowed(to: spec.defaultVariant))) ?? 0)
            }
            detail += "; \(ByteSize.format(needed)) still to download for every default variant"
            if needed > space.availableBytes { level = .warning }
        }
        return Check("free space", level, detail)
    }

    /// The state database opens (created if missing) and its model table reads.
    public func stateDatabase() -> Check {
        do {
            let store = try StateStore(resolver: resolver)
            return Check("state database", .ok, "\(store.path): \(try store.allUsage().count) models tracked")
        } catch {
            return Check("state database", .failed, "\(resolver.statePath): \(error)")
        }
    }

    /// Bytes of partial downloads, and how many no process is fetching and nothing touched
    /// for ``abandonedAfter`` seconds.
    /// Without `probeLocks`, none counts as abandoned (finding out takes each one's lock).
    public func partialDownloads(now: Date = Date(), probeLocks: Bool = true) -> (check: Check, abandoned: Int, bytes: Int64) {
        let locks = LockManager(resolver: resolver)
        let tmp = resolver.tmpDir
        let names = (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? []
        var bytes: Int64 = 0
        var abandoned = 0
        for name in names where name.hasSuffix(".part") {
            guard let info = try? FileSystem.info(tmp + "/" + name), info.kind == .regular else { continue }
            bytes = bytes.addingClamped(max(0, info.allocatedBytes))
            let idle = now.timeIntervalSince1970 - info.modified > Self.abandonedAfter
            if probeLocks && idle && !locks.isLocked(LockManager.fileLockName(String(name.dropLast(5)))) { abandoned += 1 }
        }
        let detail = "\(ByteSize.format(bytes)) in \(tmp)" + (abandoned == 0 ? "" : ", \(abandoned) abandoned")
            + " (resumable; `wan models gc --aggressive` removes abandoned ones)"
        return (Check("partial downloads", .ok, detail), abandoned, bytes)
    }

    /// One model's health, from its status now.
    public func model(_ spec: ModelSpec) throws -> ModelHealth {
        guard let engine else { throw CacheHealthError.noManifest }
        return ModelHealth(try engine.status(spec), modelID: spec.modelID)
    }

    /// Every given model's health in one check: failed when one is corrupt.
    public func models(_ specs: [ModelSpec]) -> Check {
        var counts: [String: Int] = [:]
        var corrupt: [String] = []
        var unreadable: [String] = []
        for spec in specs {
            guard let health = try? model(spec) else {
                unreadable.append(spec.modelID)
                continue
            }
            counts[health.status.state.rawValue, default: 0] += 1
            if health.status.state == .corrupt { corrupt.append(spec.modelID) }
        }
        var detail = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        if detail.isEmpty { detail = "no models" }
        if !corrupt.isEmpty { detail += "; corrupt: \(corrupt.joined(separator: ", ")) (`wan models verify --fix` repairs them)" }
        if !unreadable.isEmpty { detail += "; status unreadable: \(unreadable.joined(separator: ", "))" }
        return Check("models", corrupt.isEmpty && unreadable.isEmpty ? .ok : .failed, detail)
    }
}

/// A model check without a manifest.
public enum CacheHealthError: CodedError {
    case noManifest
    public var code: ErrorCode { .manifestNotFound }
    public var description: String { "no manifest loaded: models cannot be checked" }
}
