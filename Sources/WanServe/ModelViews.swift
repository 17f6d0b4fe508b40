import Foundation
import Hummingbird
import NIOPosix
import WanCache
import WanCore
import WanSystem

/// What the API says about one model, computed from the cache, the state database and the
/// live fetches of this process. Fields the seeds show that a cache cannot measure are null
/// (see docs/sidecar.md); every key is always written.
struct ModelDetail: ResponseEncodable {
    let modelID: String
    let availabilityStatus: String
    let isAvailable: Bool
    /// Proxy: the model is in use (a shared model lock: open through the mount, or being ensured).
    let isLoaded: Bool
    let sizeMB: Double
    let downloadProgress: Nullable<Double>
    let missingFiles: [String]
    let integrityScore: Double
    let lastHealthCheck: Nullable<Date>
    let performanceScore: Nullable<Double>
    let corruptionDetected: Bool
    /// Uses per day over the last 30 days.
    let usageFrequency: Nullable<Double>
    let lastUsed: Nullable<Date>
    let averageGenerationTime: Nullable<Double>
    let canPauseDownload: Bool
    let canResumeDownload: Bool
    let estimatedDownloadTime: Nullable<Double>
    let currentVersion: String
    let latestVersion: String
    let updateAvailable: Bool

}

/// What the cache may grow into: `max_total_size` when set, else the filesystem's size.
struct StorageFigures {
    let usage: DiskUsage
    let capacity: Int64
    let available: Int64

    /// - Parameter maxTotalSize: the cache's limit (the live setting), nil = the filesystem's size.
    init(_ engine: CacheEngine, maxTotalSize: Int64?) throws {
        let usage = try DiskUsage.measure(engine.resolver)
        self.usage = usage
        capacity = maxTotalSize ?? usage.filesystem?.totalBytes ?? 0
        available = maxTotalSize.map { max(0, $0 - usage.totalBytes) } ?? usage.filesystem?.availableBytes ?? 0
    }

    /// Used over capacity, in percent with one decimal.
    var usagePercent: Double { capacity > 0 ? (Double(usage.totalBytes) / Double(capacity) * 1000).rounded() / 10 : 0 }
}

/// An id for something the API created: `prefix` + 12 hex digits (`req_…`, `check_…`).
func generatedID(_ prefix: String) -> String {
    prefix + "_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(12).lowercased()
}

/// Reads the models' state for the API.
struct ModelCatalog: Sendable {
    let engine: CacheEngine
    /// The downloads this sidecar runs (their state shows in each model's detail).
    let downloads: DownloadManager
    /// What `PUT /config/update` can change.
    let settings: SidecarSettings
    /// The bounded pool every blocking call of a handler or a service runs on
    /// (`sidecar_blocking_threads`), so Swift concurrency's threads never wait on a disk walk,
    /// SQLite or a hash.
    let blocking: NIOThreadPool
    /// Every model's status, refreshed each second by the availability watcher: the probe's answer.
    let board = StatusBoard()
    /// The one thread the watcher refreshes the board on, so the probe's answer never waits
    /// behind the requests queued on `blocking`.
    let boardThread: NIOThreadPool

    /// Runs `body` on the blocking pool and returns its result.
    func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await blocking.runIfActive(body)
    }

    /// Runs `body` on the blocking pool and encodes its answer there too, through the
    /// context's encoder: a report of every model is JSON work that must not hold the event
    /// loop's threads (the probes answer from those).
    func respond<T: ResponseGenerator>(to request: Request, context: SidecarContext,
                                       _ body: @escaping @Sendable () throws -> T) async throws -> Response {
        try await blocking.runIfActive { try body().response(from: request, context: context) }
    }

    /// The cache's size and room under the live `max_storage_gb`.
    func storageFigures() throws -> StorageFigures {
        try StorageFigures(engine, maxTotalSize: settings.current.maxStorageBytes)
    }

    var registry: ModelRegistry { engine.registry }

    /// Every manifest model in its default variant.
    func specs() throws -> [ModelSpec] {
        try registry.listModels().map { id throws(OrchestratorError) in try registry.spec(id) }
    }

    /// One model by id (`name@version` or `name@version#variant`), or a 404/422 API error.
    func spec(_ raw: String) throws -> ModelSpec {
        let decoded = raw.removingPercentEncoding ?? raw
        return try registry.spec(decoded)
    }

    /// `available`, `downloading`, `corrupted` or `missing` (seed 003's lower-case values).
    static func availability(_ status: ModelStatus, fetching: Bool) -> String {
        switch status.state {
        case .complete: "available"
        case .corrupt: "corrupted"
        case .verifying: "downloading"
        case .partial, .notPresent: fetching ? "downloading" : "missing"
        }
    }

    /// Seconds until `spec` is complete: 0 when it is; its download's ETA while one runs;
    /// else what is missing over the average speed of past downloads; nil without history.
    func estimatedSeconds(_ spec: ModelSpec) throws -> Double? {
        let status = try engine.status(spec)
        if status.state == .complete { return 0 }
        if let eta = downloads.snapshot(DownloadManager.key(spec))?.etaSeconds { return Double(eta) }
        let done = (try engine.state(create: false)?.downloads(limit: 1000) ?? []).filter { $0.outcome == "completed" && $0.duration > 0 }
        let seconds = done.reduce(0.0) { $0 + $1.duration }
        guard seconds > 0 else { return nil }
        let speed = Double(done.reduce(Int64(0)) { $0 + $1.bytes }) / seconds
        return speed > 0 ? Double(status.bytesNeeded) / speed : nil
    }

    /// Uses per day over the last 30 days (ensures and mount opens), from the state database.
    func usageFrequency(_ key: String) -> Nullable<Double> {
        let now = Date()
        guard let events = try? engine.state(create: false)?.useEvents(in: now.addingTimeInterval(-30 * 86400)...now) else { return Nullable(nil) }
        let uses = events.filter { $0.model == key }.reduce(Int64(0)) { $0 + $1.uses }
        return Nullable((Double(uses) / 30 * 1000).rounded() / 1000)
    }

    func isFetching(_ spec: ModelSpec) -> Bool {
        let hashes = Set(spec.files.map(\.sha256))
        return engine.liveFetchers().contains { hashes.contains($0.content.sha256) && $0.snapshot.phase != .complete }
    }

    /// The model's `availability_status`: the cache's state, refined by this sidecar's download
    /// of it (queued, paused, failed) and by fetches live in this process; `unknown` when the
    /// state cannot be read.
    func availability(_ spec: ModelSpec) -> String {
        guard let status = try? engine.status(spec) else { return "unknown" }
        return availability(spec, status: status)
    }

    func availability(_ spec: ModelSpec, status: ModelStatus) -> String {
        if status.state == .complete { return "available" }
        return downloads.snapshot(DownloadManager.key(spec))?.status.availability ?? Self.availability(status, fetching: isFetching(spec))
    }

    func detail(_ spec: ModelSpec) throws -> ModelDetail {
        let status = try engine.status(spec)
        let usage = try engine.state(create: false)?.usage(model: engine.modelKey(spec))
        let sameName = registry.manifest.models.filter { $0.modelID.split(separator: "@").first == spec.modelID.split(separator: "@").first }
        let latest = sameName.map(\.version).max { $0.compare($1, options: .numeric) == .orderedAscending } ?? spec.version
        let fetching = isFetching(spec)
        let download = downloads.snapshot(DownloadManager.key(spec))
        let availability = availability(spec, status: status)
        return ModelDetail(
            modelID: spec.modelID,
            availabilityStatus: availability,
            isAvailable: status.state == .complete,
            isLoaded: engine.locks.isModelLocked(engine.modelKey(spec)),
            sizeMB: Double(status.bytesTotal) / 1e6,
            downloadProgress: Nullable(download.flatMap { $0.status.isActive ? $0.progressPercent : nil } ?? (status.state == .partial || fetching
                ? (status.bytesTotal == 0 ? 0 : (Double(status.bytesPresent) / Double(status.bytesTotal) * 1000).rounded() / 10) : nil)),
            missingFiles: status.missingFiles,
            integrityScore: status.integrityScore,
            lastHealthCheck: Nullable(status.lastVerified),
            performanceScore: Nullable(nil),
            corruptionDetected: status.state == .corrupt,
            usageFrequency: usageFrequency(DownloadManager.key(spec)),
            lastUsed: Nullable(usage?.lastAccess),
            averageGenerationTime: Nullable(nil),
            canPauseDownload: download.map { $0.status == .queued || $0.status == .downloading } ?? false,
            canResumeDownload: download.map { $0.status == .paused || $0.status == .failed } ?? false,
            estimatedDownloadTime: Nullable(download?.etaSeconds.map(Double.init)),
            currentVersion: spec.version,
            latestVersion: latest,
            updateAvailable: latest.compare(spec.version, options: .numeric) == .orderedDescending)
    }
}
