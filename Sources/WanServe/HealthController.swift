import Foundation
import Hummingbird
import Synchronization
import WanCache
import WanCore
import WanSystem

/// `GET /api/v1/models/health[/{id}]` and `POST /api/v1/models/health/{id}/check`: seed 003's
/// shape with seed 002's keys beside it. A check re-hashes every file of the model in the
/// background (the result lands in the state database, where the next GET reads it).
final class HealthChecks: Sendable {
    private let running = Mutex<[String: String]>([:])   // model id → check id
    let catalog: ModelCatalog

    init(catalog: ModelCatalog) { self.catalog = catalog }

    struct Entry: Encodable {
        let modelID: String
        let healthStatus: String
        let isHealthy: Bool
        let integrityScore: Double
        let issues: [String]
        let corruptionTypes: [String]
        let lastCheck: Nullable<Date>
        let repairSuggestions: [String]
        let canAutoRepair: Bool
        let overallHealth: String
        /// No real signal (no inference runs here).
        let performanceScore: Nullable<Double>
        let recommendations: [String]
        let checkRunning: Bool

    }

    struct SystemHealth: Encodable {
        let score: Double, healthy: Int, degraded: Int, corrupted: Int, storageUsagePercent: Double, updated: Date
        /// The schedules: last health pass and GC.
        let schedules: Maintenance.Counters
        /// The cache-wide checks, run for this report (`wan models diagnose`'s, without the lock
        /// probes: the counts of idle locks and abandoned partial downloads come from the last
        /// health pass).
        let cache: CacheHealth.Report

        enum CodingKeys: String, CodingKey {
            case lastHealthPass = "last_health_pass", lastGC = "last_gc", gcRuns = "gc_runs", abandonedPartials = "abandoned_partials"
            case idleLockFiles = "idle_lock_files", checks
            case overallHealthScore = "overall_health_score", modelsHealthy = "models_healthy", modelsDegraded = "models_degraded"
            case modelsCorrupted = "models_corrupted", storageUsagePercent = "storage_usage_percent", lastUpdated = "last_updated"
            case overallScore = "overall_score", healthyModels = "healthy_models", degradedModels = "degraded_models"
            case corruptedModels = "corrupted_models", lastSystemCheck = "last_system_check"
        }

        // Both seeds' names for the same values (003's, then 002's synonyms).
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(score, forKey: .overallHealthScore)
            try c.encode(score, forKey: .overallScore)
            try c.encode(healthy, forKey: .modelsHealthy)
            try c.encode(healthy, forKey: .healthyModels)
            try c.encode(degraded, forKey: .modelsDegraded)
            try c.encode(degraded, forKey: .degradedModels)
            try c.encode(corrupted, forKey: .modelsCorrupted)
            try c.encode(corrupted, forKey: .corruptedModels)
            try c.encode(storageUsagePercent, forKey: .storageUsagePercent)
            try c.encode(updated, forKey: .lastUpdated)
            try c.encode(schedules.lastHealthPass ?? updated, forKey: .lastSystemCheck)
            try c.encode(Nullable(schedules.healthPasses > 0 ? schedules.lastHealthPass : nil), forKey: .lastHealthPass)
            try c.encode(Nullable(schedules.gcRuns > 0 ? schedules.lastGC : nil), forKey: .lastGC)
            try c.encode(schedules.gcRuns, forKey: .gcRuns)
            try c.encode(schedules.abandonedPartials, forKey: .abandonedPartials)
            try c.encode(schedules.idleLockFiles, forKey: .idleLockFiles)
            try c.encode(cache.checks, forKey: .checks)
        }
    }

    struct Report: ResponseEncodable {
        let systemHealth: SystemHealth
        let modelHealth: [String: Entry]
        let models: [String: Entry]
        let timestamp: Date
    }

    /// The checks `wan models diagnose` runs too.
    var health: CacheHealth { CacheHealth(engine: catalog.engine) }

    func entry(_ spec: ModelSpec) throws -> Entry {
        let model = try health.model(spec)
        let status = model.status
        return Entry(modelID: spec.modelID, healthStatus: model.health, isHealthy: model.isHealthy,
                     integrityScore: status.integrityScore, issues: model.issues, corruptionTypes: model.corruptionTypes,
                     lastCheck: Nullable(status.lastVerified), repairSuggestions: model.repairSuggestions,
                     canAutoRepair: !spec.sources.isEmpty, overallHealth: model.health, performanceScore: Nullable(nil),
                     recommendations: status.lastVerified == nil && status.state == .complete ? ["run an integrity check"] : [],
                     checkRunning: running.withLock { $0[spec.modelID] != nil })
    }

    func report(_ id: String?, schedules: Maintenance.Counters) throws -> Report {
        let specs = try id.map { [try catalog.spec($0)] } ?? catalog.specs()
        let entries = try specs.map(entry)
        let healthy = entries.filter(\.isHealthy).count
        let corrupted = entries.filter { $0.healthStatus == "corrupted" }.count
        let degraded = entries.filter { $0.healthStatus == "degraded" }.count
        let percent = (try? catalog.storageFigures())?.usagePercent ?? 0
        let score = entries.isEmpty ? 1 : (Double(healthy) + 0.5 * Double(degraded)) / Double(entries.count)
        let byID = Dictionary(entries.map { ($0.modelID, $0) }, uniquingKeysWith: { a, _ in a })
        return Report(
            systemHealth: SystemHealth(score: score, healthy: healthy, degraded: degraded, corrupted: corrupted,
                                       storageUsagePercent: percent, updated: Date(), schedules: schedules, cache: health.run(probeLocks: false)),
            modelHealth: byID, models: byID, timestamp: Date())
    }

    struct CheckRequest: Decodable {
        var checkType: String?
        var forceCheck: Bool?
        enum CodingKeys: String, CodingKey { case checkType = "check_type", forceCheck = "force_check" }
    }

    struct CheckStarted: ResponseEncodable {
        let success: Bool
        let checkID: String
        let estimatedCompletion: Date
    }

    enum CheckType: String, CaseIterable { case full, integrity, performance }

    /// Starts a re-hash of every file (409 while one runs for the model).
    func startCheck(_ id: String, request: Request) async throws -> CheckStarted {
        let spec = try catalog.spec(id)
        let body = try await RequestBody.decode(CheckRequest.self, from: request, emptyMeans: "{}")
        let _: CheckType = try RequestBody.oneOf(body.checkType, "check_type", default: .full)
        let checkID = try claim(spec, as: generatedID("check"))
        let engine = catalog.engine
        catalog.blocking.submit { [self] work in
            // Records each file's result (and CORRUPT marks) in the state database. Not run
            // when the sidecar stopped first.
            if case .active = work, let result = try? engine.verify(spec), !result.verified { alert(spec, result) }
            running.withLock { $0[spec.modelID] = nil }
        }
        // sha256 runs at ~1.7 GB/s on one core here; a conservative estimate.
        let seconds = Double(spec.totalSize) / 500e6
        return CheckStarted(success: true, checkID: checkID, estimatedCompletion: Date().addingTimeInterval(seconds))
    }

    /// Marks a check or repair of `spec` as running under `id` (one at a time per model);
    /// 409 `CONFLICT` while another runs. The caller clears the mark when it ends.
    private func claim(_ spec: ModelSpec, as id: String) throws -> String {
        let claimed = running.withLock { table -> Bool in
            guard table[spec.modelID] == nil else { return false }
            table[spec.modelID] = id
            return true
        }
        guard claimed else {
            throw APIError(.conflict, code: "CONFLICT", message: "a check or repair of \(DownloadManager.key(spec)) is already running")
        }
        return id
    }

    /// A `model_health_alert` for what a re-hash found.
    func alert(_ spec: ModelSpec, _ result: VerificationResult) {
        let corrupt = !result.failedFiles.isEmpty
        catalog.downloads.events.publish(Event.HealthAlert(
            modelID: DownloadManager.key(spec), alertType: corrupt ? "corruption_detected" : "missing_files",
            severity: corrupt ? "critical" : "warning",
            message: corrupt ? "checksum mismatch: \(result.failedFiles.joined(separator: ", "))"
                : "missing: \(result.missingFiles.joined(separator: ", "))",
            recommendedAction: corrupt ? "auto_repair" : "redownload", timestamp: Date()))
    }

    // MARK: - Repair

    enum RepairType: String, CaseIterable { case auto, redownload, integrityFix = "integrity_fix" }

    struct RepairRequest: Decodable {
        var repairType: String?
        var forceRepair: Bool?
        enum CodingKeys: String, CodingKey { case repairType = "repair_type", forceRepair = "force_repair" }
    }

    struct RepairStarted: ResponseEncodable {
        let success: Bool
        let repairID: String
        let actionsTaken: [String]
        let estimatedCompletion: Date
        let message: String
    }

    /// Repairs a model: re-hashes it (`integrity_check`), removes damaged content
    /// (`quarantine`), re-links verified blobs the model lost (`relink`), and unless
    /// `integrity_fix` (no network) queues a download of what is still missing
    /// (`partial_redownload`, or `full_redownload` when nothing was left). Blobs are immutable
    /// and links replaced atomically, so a file open through the mount is never broken.
    func repair(_ id: String, request: Request) async throws -> RepairStarted {
        let spec = try catalog.spec(id)
        let body = try await RequestBody.decode(RepairRequest.self, from: request, emptyMeans: "{}")
        let type: RepairType = try RequestBody.oneOf(body.repairType, "repair_type", default: .auto)
        let force = body.forceRepair ?? false
        let outcome = try await catalog.offload { [self] in try performRepair(spec, type: type, force: force) }
        return RepairStarted(success: true, repairID: outcome.id, actionsTaken: outcome.actions,
                             estimatedCompletion: outcome.estimatedCompletion, message: outcome.message)
    }

    struct RepairOutcome: Sendable {
        let id: String
        let actions: [String]
        let estimatedCompletion: Date
        let message: String
    }

    /// The repair itself (the API's and the scheduled health pass's): 409 while a check or
    /// repair of the model runs. It blocks (it hashes and writes): callers run it on the
    /// blocking pool.
    func performRepair(_ spec: ModelSpec, type: RepairType, force: Bool) throws -> RepairOutcome {
        let key = DownloadManager.key(spec)
        let repairID = try claim(spec, as: generatedID("repair"))
        defer { running.withLock { $0[spec.modelID] = nil } }

        let engine = catalog.engine
        let before = try engine.status(spec)
        if before.state == .complete && !force && type != .redownload {
            return RepairOutcome(id: repairID, actions: [], estimatedCompletion: Date(),
                                 message: "\(key) is complete; nothing to repair (force_repair re-hashes it anyway)")
        }
        // The repair `wan models verify --fix` runs too; what is still missing is then queued
        // as a download of this sidecar (with progress), not fetched inline.
        let report = try engine.repair(spec, mode: .local)
        var actions = report.actions
        var eta = Date()
        if type != .integrityFix && !report.stillMissing.isEmpty {
            actions.append(report.bytesPresent == 0 ? "full_redownload" : "partial_redownload")
            if catalog.downloads.snapshot(key)?.status.isActive != true {
                _ = try catalog.downloads.start(spec, priority: .high, bandwidth: catalog.settings.defaultBandwidth,
                                                maxRetries: catalog.settings.current.maxRetries)
            }
            eta = Date().addingTimeInterval(try catalog.estimatedSeconds(spec) ?? 0)
        }
        let final = try engine.status(spec)
        if final.state == .complete {
            catalog.downloads.events.publish(Event.HealthAlert(modelID: key, alertType: "repair_completed", severity: "info",
                                                               message: "\(key) verified after repair", recommendedAction: "none",
                                                               timestamp: Date()))
        }
        let message = final.state == .complete ? "\(key) is intact"
            : type == .integrityFix ? "\(key) still lacks \(final.missingFiles.count) file(s); a redownload repair fetches them"
            : "\(key): downloading \(final.missingFiles.count) file(s) again (see download/progress)"
        return RepairOutcome(id: repairID, actions: actions, estimatedCompletion: eta, message: message)
    }
}

/// `/api/v1/models/health`: the report (the schedules' last runs beside each model's health),
/// and a model's check and repair.
struct HealthController: Controller {
    let checks: HealthChecks
    let maintenance: Maintenance

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.get { request, context in
            try await checks.catalog.respond(to: request, context: context) { try checks.report(nil, schedules: maintenance.snapshot) }
        }
        routes.get(":model_id") { request, context in
            let id = try context.parameters.require("model_id")
            return try await checks.catalog.respond(to: request, context: context) { try checks.report(id, schedules: maintenance.snapshot) }
        }
        routes.post(":model_id/check") { request, context in try await checks.startCheck(try context.parameters.require("model_id"), request: request) }
        routes.post(":model_id/repair") { request, context in try await checks.repair(try context.parameters.require("model_id"), request: request) }
    }
}
