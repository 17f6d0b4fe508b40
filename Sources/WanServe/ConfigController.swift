import Foundation
import Hummingbird
import WanCore

/// `GET /api/v1/config/current` and `PUT /api/v1/config/update` (seed 002): the running
/// settings, and the ones that can change live (persisted in the state database).
struct ConfigController: Controller {
    let catalog: ModelCatalog
    let config: OrchestratorConfig

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.get("current") { request, context in try await catalog.respond(to: request, context: context) { current() } }
        routes.put("update") { request, _ in try await update(request) }
    }

    struct View: ResponseEncodable {
        struct Storage: Encodable {
            let modelsDirectory: String
            let maxStorageGB: Nullable<Double>
            let cleanupThresholdPercent: Double
        }
        struct Downloads: Encodable {
            let maxConcurrentDownloads: Int
            let maxRetries: Int
            /// Megabits per second; 0 = unlimited.
            let bandwidthLimitMbps: Double
        }
        struct Features: Encodable {
            let enhancedDownloads = true
            let healthMonitoring: Bool
            let intelligentFallback = true
            let usageAnalytics = true
            let garbageCollection: Bool
            let metrics: Bool
        }
        struct HealthMonitoring: Encodable {
            let checkIntervalHours: Double
            let autoRepairEnabled: Bool
        }
        let storage: Storage
        let downloads: Downloads
        let features: Features
        let healthMonitoring: HealthMonitoring
    }

    func current() -> View {
        let values = catalog.settings.current
        return View(
            storage: .init(modelsDirectory: config.modelsRoot ?? catalog.engine.resolver.modelsRoot, maxStorageGB: Nullable(values.maxStorageGB),
                           cleanupThresholdPercent: values.cleanupThresholdPercent),
            downloads: .init(maxConcurrentDownloads: values.maxConcurrentDownloads, maxRetries: values.maxRetries,
                             bandwidthLimitMbps: values.bandwidthLimitMbps),
            features: .init(healthMonitoring: values.healthMonitoring, garbageCollection: values.garbageCollection, metrics: config.enableMetrics),
            healthMonitoring: .init(checkIntervalHours: values.checkIntervalHours, autoRepairEnabled: values.autoRepairEnabled))
    }

    struct Updated: ResponseEncodable {
        let success: Bool
        let updatedSettings: [String]
        let restartRequired: Bool
    }

    /// Applies a partial body of the same sections as `current` (only the writable keys; any
    /// other key or a bad value is 422 and changes nothing).
    func update(_ request: Request) async throws -> Updated {
        let body = try await RequestBody.object(from: request).object
        var updates: [String: Any] = [:]
        for (section, content) in body {
            guard let fields = content as? [String: Any] else { throw RequestBody.invalid(section, "must be an object of settings") }
            for (field, value) in fields { updates["\(section).\(field)"] = value }
        }
        guard !updates.isEmpty else { throw RequestBody.invalid("body", "names no setting to change") }
        let pending = ParsedJSON(updates)
        let changed = try await catalog.offload { [catalog] in try catalog.settings.update(pending.value) }   // persisted: SQLite
        catalog.downloads.maxConcurrent = catalog.settings.current.maxConcurrentDownloads
        return Updated(success: true, updatedSettings: changed, restartRequired: false)
    }
}
