import Foundation
import Hummingbird
import WanCore

/// `GET /api/v1/config/current`: seed 002's sections, from the running configuration.
struct ConfigView: Encodable {
    struct Storage: Encodable {
        let modelsDirectory: String
        let maxStorageGB: Nullable<Double>
        enum CodingKeys: String, CodingKey { case modelsDirectory = "models_directory", maxStorageGB = "max_storage_gb" }
    }
    struct Downloads: Encodable {
        let maxConcurrentDownloads: Int
        let maxRetries: Int
        /// Megabits per second; 0 = unlimited.
        let bandwidthLimitMbps: Double
        enum CodingKeys: String, CodingKey {
            case maxConcurrentDownloads = "max_concurrent_downloads", maxRetries = "max_retries", bandwidthLimitMbps = "bandwidth_limit_mbps"
        }
    }
    struct Features: Encodable {
        let garbageCollection: Bool
        let metrics: Bool
        enum CodingKeys: String, CodingKey { case garbageCollection = "garbage_collection", metrics }
    }
    let storage: Storage
    let downloads: Downloads
    let features: Features

    init(_ config: OrchestratorConfig) {
        storage = Storage(modelsDirectory: config.modelsRoot ?? "", maxStorageGB: Nullable(config.maxTotalSize.map { Double($0) / 1e9 }))
        downloads = Downloads(maxConcurrentDownloads: config.maxConcurrentDownloads, maxRetries: config.retryAttempts,
                              bandwidthLimitMbps: config.bandwidthLimit.map { Double($0) * 8 / 1e6 } ?? 0)
        features = Features(garbageCollection: config.enableGarbageCollection, metrics: config.enableMetrics)
    }
}
