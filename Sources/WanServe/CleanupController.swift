import Foundation
import Hummingbird
import WanCache
import WanCore
import WanSystem

/// `POST /api/v1/models/cleanup`: the same collection as `wan models gc` (pins, models in use
/// and blobs other models share are never removed), a dry run unless `dry_run` is false.
struct CleanupController: Controller {
    let catalog: ModelCatalog
    var engine: CacheEngine { catalog.engine }

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.post { request, _ in try await cleanup(request) }
    }

    /// Both seeds' fields: 003's `dry_run`, `target_space_gb`, `keep_recent_days`; 002's
    /// `cleanup_type`, `models_to_remove`, `min_unused_days` (an alias of keep_recent_days),
    /// `preserve_frequently_used`.
    struct CleanupRequest: Decodable, Sendable {
        var dryRun: Bool?
        var targetSpaceGB: Double?
        var keepRecentDays: Int?
        var minUnusedDays: Int?
        var cleanupType: String?
        var modelsToRemove: [String]?
        var preserveFrequentlyUsed: Bool?
        enum CodingKeys: String, CodingKey {
            case dryRun = "dry_run", targetSpaceGB = "target_space_gb", keepRecentDays = "keep_recent_days"
            case minUnusedDays = "min_unused_days", cleanupType = "cleanup_type", modelsToRemove = "models_to_remove"
            case preserveFrequentlyUsed = "preserve_frequently_used"
        }
    }

    enum CleanupType: String, CaseIterable { case auto, manual }

    struct Action: Encodable {
        let actionType: String
        let modelID: String
        let spaceFreedGB: Double
        let reason: String
        let lastUsed: Nullable<Date>
    }

    struct Recommendations: Encodable {
        let totalSpaceAvailableGB: Double
        let targetSpaceGB: Nullable<Double>
        let spaceToFreeGB: Double
        let cleanupActions: [Action]
    }

    struct Summary: Encodable {
        let totalProcessed: Int, removed: Int, preserved: Int, errors: Int
    }

    struct CleanupResponse: ResponseEncodable {
        let dryRun: Bool
        let recommendations: Recommendations
        let executedActions: [Action]
        let totalSpaceFreedGB: Double
        let timestamp: Date
        let success: Bool
        let cleanupID: String
        let modelsRemoved: [String]
        let spaceFreedGB: Double
        let modelsPreserved: [String]
        let summary: Summary
    }

    func cleanup(_ request: Request) async throws -> CleanupResponse {
        let body = try await RequestBody.decode(CleanupRequest.self, from: request, emptyMeans: "{}")
        return try await catalog.offload { [self] in try runCleanup(body) }
    }

    /// The plan and, unless a dry run, the collection (blocking: on the pool).
    private func runCleanup(_ body: CleanupRequest) throws -> CleanupResponse {
        let type: CleanupType = try RequestBody.oneOf(body.cleanupType, "cleanup_type", default: .auto)
        let dryRun = body.dryRun ?? true
        let keepDays = body.keepRecentDays ?? body.minUnusedDays ?? 30
        guard (0...36500).contains(keepDays) else { throw RequestBody.invalid("keep_recent_days", "must be from 0 to 36500 days") }
        if let target = body.targetSpaceGB { _ = try RequestBody.bounded(target, "target_space_gb", 0...1e9) }

        let figures = try catalog.storageFigures()
        var collector = GarbageCollector(engine: engine, maxModelAge: Double(keepDays) * 86400)
        collector.maxTotalSize = catalog.settings.current.maxStorageBytes   // the live setting, even when it is none
        if type == .manual {
            guard let names = body.modelsToRemove, !names.isEmpty else {
                throw RequestBody.invalid("models_to_remove", "is required (a list of model ids) with cleanup_type manual")
            }
            collector.only = Set(try names.map { DownloadManager.key(try catalog.spec($0)) })
        } else if let target = body.targetSpaceGB {
            // Free space to reach: shrink the cache until `available` is at least the target.
            let shortfall = Int64(target * 1e9) - figures.available
            if shortfall > 0 {
                // The collector counts models and blobs, not partial downloads.
                let collectable = figures.usage.totalBytes - figures.usage.partialBytes
                collector.maxTotalSize = max(0, min(collector.maxTotalSize ?? .max, collectable - shortfall))
            }
        }
        let gc = collector
        let plan = try gc.collect(dryRun: true)
        if type == .manual, plan.modelsRemoved.isEmpty, !plan.modelsPreserved.isEmpty {
            throw APIError(.conflict, code: "CONFLICT", message: "every model named is pinned or in use: \(plan.modelsPreserved.joined(separator: ", "))",
                           details: Dictionary(plan.modelsPreserved.map { ($0, plan.reasons[$0] ?? "kept") }, uniquingKeysWith: { a, _ in a }))
        }
        let done = dryRun ? plan : try gc.collect(dryRun: false)
        let state = try engine.state(create: false)
        let sizes = Dictionary(figures.usage.models.map { ($0.directory, $0.bytes) }, uniquingKeysWith: { a, _ in a })
        func actions(_ result: GCResult) -> [Action] {
            result.modelsRemoved.map { name in
                Action(actionType: "remove_model", modelID: name, spaceFreedGB: Double(sizes[name] ?? 0) / 1e9,
                       reason: result.reasons[name] ?? "", lastUsed: Nullable((try? state?.usage(model: name))??.lastAccess))
            }
        }
        let freed = dryRun ? 0 : Double(done.bytesReclaimed) / 1e9
        return CleanupResponse(
            dryRun: dryRun,
            recommendations: Recommendations(totalSpaceAvailableGB: Double(figures.available) / 1e9, targetSpaceGB: Nullable(body.targetSpaceGB),
                                             spaceToFreeGB: Double(plan.bytesReclaimable) / 1e9, cleanupActions: actions(plan)),
            executedActions: dryRun ? [] : actions(done), totalSpaceFreedGB: freed, timestamp: Date(), success: done.errors.isEmpty,
            cleanupID: generatedID("cleanup"), modelsRemoved: dryRun ? [] : done.modelsRemoved, spaceFreedGB: freed,
            modelsPreserved: done.modelsPreserved,
            summary: Summary(totalProcessed: done.modelsRemoved.count + done.modelsPreserved.count,
                             removed: dryRun ? 0 : done.modelsRemoved.count, preserved: done.modelsPreserved.count, errors: done.errors.count))
    }
}
