import Foundation
import Hummingbird
import WanCache
import WanCore
import WanSystem

/// `GET /api/v1/models/status/detailed[/{id}]` and `GET /api/v1/models/storage`: every
/// model's availability and the cache's use of the disk, computed at the time of the request
/// on the blocking pool.
struct StatusController: Controller {
    let catalog: ModelCatalog
    let config: OrchestratorConfig

    var engine: CacheEngine { catalog.engine }

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.get("status/detailed") { request, context in try await catalog.respond(to: request, context: context) { try statusDetailed() } }
        routes.get("status/detailed/:model_id") { request, context in
            let id = try context.parameters.require("model_id")
            return try await catalog.respond(to: request, context: context) { try catalog.detail(try catalog.spec(id)) }
        }
        routes.get("storage") { request, context in
            let page = try PageRequest(request: request)
            return try await catalog.respond(to: request, context: context) { try storage(page) }
        }
    }

    // MARK: - Status

    /// Both seeds' summaries in one type: `summary` (002) carries `total_storage_gb`,
    /// `system_statistics` (003) `total_size_gb` and `last_updated`; keys left nil are not written.
    struct Summary: Encodable {
        let totalModels: Int, availableModels: Int, downloadingModels: Int, corruptedModels: Int
        var totalStorageGB: Double?
        var totalSizeGB: Double?
        var lastUpdated: Date?
    }

    struct StatusReport: ResponseEncodable {
        let models: [String: ModelDetail]
        let summary: Summary
        let systemStatistics: Summary
        let timestamp: Date
    }

    func statusDetailed() throws -> StatusReport {
        let details = try catalog.specs().map(catalog.detail)
        let count = { (status: String) in details.filter { $0.availabilityStatus == status }.count }
        let onDisk = (catalog.board.diskUsage(maxAge: .seconds(15)) ?? (try? DiskUsage.measure(engine.resolver)))?.totalBytes ?? 0
        let availableSize = details.filter(\.isAvailable).reduce(0) { $0 + $1.sizeMB } / 1000
        let now = Date()
        let counts = Summary(totalModels: details.count, availableModels: count("available"), downloadingModels: count("downloading"),
                             corruptedModels: count("corrupted"))
        var summary = counts, statistics = counts
        summary.totalStorageGB = Double(onDisk) / 1e9
        statistics.totalSizeGB = availableSize
        statistics.lastUpdated = now
        return StatusReport(
            models: Dictionary(details.map { ($0.modelID, $0) }, uniquingKeysWith: { a, _ in a }),
            summary: summary,
            systemStatistics: statistics,
            timestamp: now)
    }

    // MARK: - Storage

    struct StorageReport: ResponseEncodable {
        struct Summary: Encodable {
            let totalCapacityGB: Double, usedSpaceGB: Double, availableSpaceGB: Double, usagePercent: Double
            let modelsCount: Int
        }
        struct ModelStorage: Encodable {
            let modelID: String, sizeGB: Double, lastAccessed: Nullable<Date>, usageFrequency: Nullable<Double>, storageTier: String
        }
        struct Cleanup: Encodable {
            let potentialSavingsGB: Double, safeToRemoveCount: Int, candidates: [String]
        }
        let storageSummary: Summary
        let modelsStorage: [ModelStorage]
        let cleanupSuggestions: Cleanup
        let pagination: Pagination?
    }

    /// `storage_tier` has no real signal (one local tier): `hot` when used in the last 7 days,
    /// `warm` in the last 30, else `cold`.
    static func tier(lastAccess: Date?, now: Date) -> String {
        guard let lastAccess else { return "cold" }
        let days = now.timeIntervalSince(lastAccess) / 86400
        return days <= 7 ? "hot" : days <= 30 ? "warm" : "cold"
    }

    /// The storage report; `models_storage` is paginable.
    func storage(_ page: PageRequest) throws -> StorageReport {
        let figures = try catalog.storageFigures()
        let usage = figures.usage
        let state = try engine.state(create: false)
        let now = Date()
        let models = usage.models.map { model in
            let access = (try? state?.usage(model: model.directory))??.lastAccess
            return StorageReport.ModelStorage(modelID: model.directory, sizeGB: Double(model.bytes) / 1e9, lastAccessed: Nullable(access),
                                              usageFrequency: catalog.usageFrequency(model.directory), storageTier: Self.tier(lastAccess: access, now: now))
        }
        let (shown, pagination) = try page.apply(models)
        let maxTotalSize = catalog.settings.current.maxStorageBytes
        var collector = GarbageCollector(engine: engine, maxModelAge: config.maxModelAge)
        collector.maxTotalSize = maxTotalSize   // the live setting, even when it is none
        if maxTotalSize == nil && config.maxModelAge == nil { collector.maxModelAge = 30 * 86400 }
        let plan = try collector.collect(dryRun: true, now: now)
        return StorageReport(
            storageSummary: .init(totalCapacityGB: Double(figures.capacity) / 1e9, usedSpaceGB: Double(usage.totalBytes) / 1e9,
                                  availableSpaceGB: Double(figures.available) / 1e9, usagePercent: figures.usagePercent,
                                  modelsCount: usage.models.count),
            modelsStorage: shown,
            cleanupSuggestions: .init(potentialSavingsGB: Double(plan.bytesReclaimable) / 1e9, safeToRemoveCount: plan.modelsRemoved.count,
                                      candidates: plan.modelsRemoved),
            pagination: pagination)
    }

}
