import Foundation
import Logging
import Synchronization
import WanCache
import WanCore
import WanSystem

/// The sidecar's schedules: garbage collection (``GCSchedule``, the one the mount follows too: hourly, and as soon as the cache reaches
/// `cleanup_threshold_percent` of `max_storage_gb`) and health passes (every
/// `check_interval_hours`: re-hash complete models, oldest verification first, within a byte
/// budget; count abandoned partial downloads and lock files nobody holds; alert; repair when
/// `auto_repair_enabled`). What they did shows in `/metrics` and `/api/v1/models/health`.
final class Maintenance: Sendable {
    struct Counters: Sendable {
        /// From the GC schedule (``GCSchedule/Record``).
        var gcRuns = 0
        var gcBytesReclaimed: Int64 = 0
        var lastGC: Date?
        var healthPasses = 0
        var checksOK = 0
        var checksFailed = 0
        var lastHealthPass: Date?
        var abandonedPartials = 0
        var idleLockFiles = 0
    }

    let catalog: ModelCatalog
    let checks: HealthChecks
    /// How often the schedules wake to see whether something is due.
    let tick: Duration
    /// Bytes a health pass may re-hash.
    let hashBudget: Int64
    let logger: Logger
    /// The garbage collection schedule the mount follows too, under the live settings.
    let gc: GCSchedule
    private let counters: Mutex<Counters>

    init(catalog: ModelCatalog, checks: HealthChecks, tick: Duration = .seconds(60), hashBudget: Int64 = 16 << 30,
         logger: Logger = Logger(label: "wan.serve.maintenance")) {
        self.catalog = catalog
        self.checks = checks
        self.tick = tick
        self.hashBudget = hashBudget
        self.logger = logger
        // The first runs come a period after the start (GC sooner if the cache is over its threshold).
        var initial = Counters()
        initial.lastHealthPass = Date()
        counters = Mutex(initial)
        let (settings, maxModelAge) = (catalog.settings, catalog.engine.config.maxModelAge)
        gc = GCSchedule(engine: catalog.engine) {
            let current = settings.current
            guard current.garbageCollection else { return nil }
            return GCSchedule.Policy(limit: current.maxStorageBytes, thresholdPercent: current.cleanupThresholdPercent,
                                     maxModelAge: maxModelAge, period: 3600)
        }
    }

    var snapshot: Counters {
        var counters = self.counters.withLock { $0 }
        let gcRecord = gc.snapshot
        counters.gcRuns = gcRecord.runs
        counters.gcBytesReclaimed = gcRecord.bytesReclaimed
        counters.lastGC = gcRecord.lastRun
        return counters
    }
    var engine: CacheEngine { catalog.engine }

    /// Runs until the task is cancelled.
    func run() async {
        while !Task.isCancelled {
            let settings = catalog.settings.current
            let now = Date()
            let last = snapshot
            await collectGarbageIfDue()
            if settings.healthMonitoring,
               last.lastHealthPass.map({ now.timeIntervalSince($0) >= settings.checkIntervalHours * 3600 }) ?? true {
                await healthPass(settings)
            }
            try? await Task.sleep(for: tick)
        }
    }

    // MARK: - GC

    /// Runs the GC schedule's collection if one is due (on the blocking pool), and logs it.
    func collectGarbageIfDue() async {
        do {
            if let result = try await catalog.offload({ [gc] in try gc.runIfDue() }), !result.modelsRemoved.isEmpty {
                logger.info("scheduled gc removed \(result.modelsRemoved.joined(separator: ", ")) (\(result.bytesReclaimed) bytes)")
            }
        } catch {
            logger.error("scheduled gc: \(error)")
        }
    }

    // MARK: - Health

    func healthPass(_ settings: SidecarSettings.Values) async {
        // Complete models, oldest verification first; within the budget (at least one per pass).
        let candidates = (try? await catalog.offload { [engine, catalog] () -> [(spec: ModelSpec, verified: Date?)] in
            let state = try? engine.state(create: false)
            var candidates: [(spec: ModelSpec, verified: Date?)] = []
            for spec in (try? catalog.specs()) ?? [] where (try? engine.status(spec).state) == .complete {
                candidates.append((spec, ((try? state?.lastVerified(model: engine.modelKey(spec))) ?? nil) ?? nil))
            }
            return candidates.sorted { ($0.verified ?? .distantPast) < ($1.verified ?? .distantPast) }
        }) ?? []
        var budget = hashBudget
        var ok = 0, failed = 0
        for (spec, _) in candidates {
            guard !Task.isCancelled, budget > 0 || ok + failed == 0 else { break }   // cancelled: the sidecar stops
            budget -= spec.totalSize
            guard let result = try? await catalog.offload({ [engine] in try engine.verify(spec) }) else { continue }
            if result.verified {
                ok += 1
                continue
            }
            failed += 1
            checks.alert(spec, result)
            if settings.autoRepairEnabled {
                _ = try? await catalog.offload { [checks] in try checks.performRepair(spec, type: .auto, force: true) }
            }
        }
        let cache = try? await catalog.offload { [engine] in CacheHealth(engine: engine).run() }
        let (partials, idleLocks) = (cache?.abandonedPartials ?? 0, cache?.idleLockFiles ?? 0)
        counters.withLock {
            $0.healthPasses += 1
            $0.checksOK += ok
            $0.checksFailed += failed
            $0.lastHealthPass = Date()
            $0.abandonedPartials = partials
            $0.idleLockFiles = idleLocks
        }
    }
}
