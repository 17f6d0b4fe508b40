import Foundation
import Hummingbird
import Prometheus
import WanCache
import WanCore
import WanSystem

/// The endpoints, grouped by what they read. Each handler computes its answer from the cache
/// engine and the state database at the time of the request: no value is a constant.
struct Routes: Sendable {
    let catalog: ModelCatalog
    let config: OrchestratorConfig
    let checks: HealthChecks
    let maintenance: Maintenance

    var engine: CacheEngine { catalog.engine }

    /// Every handler that reads the cache, the disk or the state database runs its work on the
    /// blocking pool (``ModelCatalog/offload(_:)``); only parsing and body reads stay on the
    /// event loop's task.
    func register(on router: Router<SidecarContext>) {
        router.get("/health/models") { _, _ in try await healthOfAllModels() }
        router.get("/health/models/:model_id") { _, context in
            let id = try context.parameters.require("model_id")
            return try await off { try healthModels(id) }
        }
        router.get("/api/v1/models/status/detailed") { _, _ in try await off { try statusDetailed() } }
        router.get("/api/v1/models/status/detailed/:model_id") { _, context in
            let id = try context.parameters.require("model_id")
            return try await off { try JSONResponse.make(try catalog.detail(try catalog.spec(id))) }
        }
        router.get("/api/v1/models/storage") { request, _ in
            let page = try PageRequest(request: request)
            return try await off { try storage(page) }
        }
        let configRoutes = ConfigRoutes(catalog: catalog, config: config)
        router.get("/api/v1/config/current") { _, _ in try await off { try configRoutes.current() } }
        router.put("/api/v1/config/update") { request, _ in try await configRoutes.update(request) }
        router.get("/api/v1/models/health") { _, _ in try await off { try checks.report(nil, schedules: maintenance.snapshot) } }
        router.get("/api/v1/models/health/:model_id") { _, context in
            let id = try context.parameters.require("model_id")
            return try await off { try checks.report(id, schedules: maintenance.snapshot) }
        }
        router.post("/api/v1/models/health/:model_id/check") { request, context in
            try await checks.startCheck(try context.parameters.require("model_id"), request: request)
        }
        router.post("/api/v1/models/health/:model_id/repair") { request, context in
            try await checks.repair(try context.parameters.require("model_id"), request: request)
        }
        let analytics = AnalyticsRoutes(catalog: catalog)
        router.get("/api/v1/models/analytics/cleanup") { request, _ in try await off { try analytics.cleanupAdvice(request) } }
        router.get("/api/v1/models/analytics/performance") { _, _ in try await off { try analytics.performance() } }
        router.get("/api/v1/models/analytics") { request, _ in try await off { try analytics.usage(nil, request: request) } }
        router.get("/api/v1/models/analytics/:model_id") { request, context in
            let id = try context.parameters.require("model_id")
            return try await off { try analytics.usage(id, request: request) }
        }
        let fallback = FallbackRoutes(catalog: catalog)
        router.post("/api/v1/models/fallback/suggest") { request, _ in try await fallback.suggest(request) }
        router.post("/api/v1/models/fallback/queue") { request, _ in try await fallback.enqueue(request) }
        router.get("/api/v1/models/fallback/queue/:queue_id") { _, context in
            let id = try context.parameters.require("queue_id")
            return try await off { try fallback.entry(id) }
        }
        let cleanup = CleanupRoutes(catalog: catalog)
        router.post("/api/v1/models/cleanup") { request, _ in try await cleanup.cleanup(request) }
        let downloads = DownloadRoutes(catalog: catalog)
        router.post("/api/v1/models/download/manage") { request, _ in try await downloads.manage(request) }
        router.get("/api/v1/models/download/progress/:model_id") { _, context in
            let id = try context.parameters.require("model_id")
            return try await off { try downloads.progress(id) }
        }
        router.get("/api/v1/models/download/active") { request, _ in try await off { try downloads.active(request) } }
        if config.enableMetrics {
            router.get("/metrics") { _, _ in try await off { try metrics() } }
        }
    }

    /// A handler's blocking work, on the pool.
    private func off(_ body: @escaping @Sendable () throws -> Response) async throws -> Response {
        try await catalog.offload(body)
    }

    // MARK: - Status

    /// Both seeds' summaries in one type: `summary` (002) carries `total_storage_gb`,
    /// `system_statistics` (003) `total_size_gb` and `last_updated`; keys left nil are not written.
    struct Summary: Encodable {
        let totalModels: Int, availableModels: Int, downloadingModels: Int, corruptedModels: Int
        var totalStorageGB: Double?
        var totalSizeGB: Double?
        var lastUpdated: Date?
        enum CodingKeys: String, CodingKey {
            case totalModels = "total_models", availableModels = "available_models", downloadingModels = "downloading_models"
            case corruptedModels = "corrupted_models", totalStorageGB = "total_storage_gb", totalSizeGB = "total_size_gb"
            case lastUpdated = "last_updated"
        }
    }

    struct StatusReport: Encodable {
        let models: [String: ModelDetail]
        let summary: Summary
        let systemStatistics: Summary
        let timestamp: Date
        enum CodingKeys: String, CodingKey { case models, summary, timestamp, systemStatistics = "system_statistics" }
    }

    func statusDetailed() throws -> Response {
        let details = try catalog.specs().map(catalog.detail)
        let count = { (status: String) in details.filter { $0.availabilityStatus == status }.count }
        let onDisk = (try? DiskUsage.measure(engine.resolver).totalBytes) ?? 0
        let availableSize = details.filter(\.isAvailable).reduce(0) { $0 + $1.sizeMB } / 1000
        let now = Date()
        let counts = Summary(totalModels: details.count, availableModels: count("available"), downloadingModels: count("downloading"),
                             corruptedModels: count("corrupted"))
        var summary = counts, statistics = counts
        summary.totalStorageGB = Double(onDisk) / 1e9
        statistics.totalSizeGB = availableSize
        statistics.lastUpdated = now
        return try JSONResponse.make(StatusReport(
            models: Dictionary(details.map { ($0.modelID, $0) }, uniquingKeysWith: { a, _ in a }),
            summary: summary,
            systemStatistics: statistics,
            timestamp: now))
    }

    // MARK: - Health (seed 001's probe)

    struct HealthEntry: Encodable {
        let modelID: String
        let variant: Nullable<String>
        let state: String
        let bytesNeeded: Int64
        let missingFiles: [String]
        let lastVerified: Nullable<Date>
        let healthStatus: String
        enum CodingKeys: String, CodingKey {
            case modelID = "model_id", variant, state, bytesNeeded = "bytes_needed", missingFiles = "missing_files"
            case lastVerified = "last_verified", healthStatus = "health_status"
        }
    }

    struct HealthReport: Encodable {
        let status: String
        let timestamp: Date
        let models: [String: HealthEntry]
    }

    static func healthStatus(_ state: ModelState) -> String {
        switch state {
        case .complete: "healthy"
        case .corrupt: "corrupted"
        case .verifying, .partial, .notPresent: "missing"
        }
    }

    /// 200 `healthy` (every model complete) or `degraded`; 503 `unhealthy` when MODELS_ROOT
    /// or the state database cannot be read (a readiness probe). Measured now, on the pool.
    func healthModels(_ id: String?) throws -> Response {
        let specs = try id.map { [try catalog.spec($0)] } ?? catalog.specs()
        return try healthReport(specs.map { (spec: $0, status: try? engine.status($0)) }, databaseReadable: (try? engine.state(create: true)) != nil,
                                at: Date())
    }

    /// Every model's health from the status board (at most about a second old, from memory:
    /// the probe stays cheap under any load), or measured on the pool when the board is stale.
    func healthOfAllModels() async throws -> Response {
        if let snapshot = catalog.board.current() {
            return try healthReport(snapshot.models, databaseReadable: snapshot.databaseReadable, at: snapshot.takenAt)
        }
        return try await off { try healthModels(nil) }
    }

    private func healthReport(_ models: [(spec: ModelSpec, status: ModelStatus?)], databaseReadable: Bool, at time: Date) throws -> Response {
        var entries: [String: HealthEntry] = [:]
        var unhealthy = !databaseReadable
        for (spec, status) in models {
            guard let status else {
                unhealthy = true
                continue
            }
            entries[spec.modelID] = HealthEntry(modelID: spec.modelID, variant: Nullable(spec.variant), state: status.state.rawValue,
                                                bytesNeeded: status.bytesNeeded, missingFiles: status.missingFiles,
                                                lastVerified: Nullable(status.lastVerified), healthStatus: Self.healthStatus(status.state))
        }
        let overall = unhealthy ? "unhealthy" : entries.values.allSatisfy { $0.healthStatus == "healthy" } ? "healthy" : "degraded"
        return try JSONResponse.make(HealthReport(status: overall, timestamp: time, models: entries),
                                     status: unhealthy ? .serviceUnavailable : .ok)
    }

    // MARK: - Storage

    struct StorageReport: Encodable {
        struct Summary: Encodable {
            let totalCapacityGB: Double, usedSpaceGB: Double, availableSpaceGB: Double, usagePercent: Double
            let modelsCount: Int
            enum CodingKeys: String, CodingKey {
                case totalCapacityGB = "total_capacity_gb", usedSpaceGB = "used_space_gb", availableSpaceGB = "available_space_gb"
                case usagePercent = "usage_percent", modelsCount = "models_count"
            }
        }
        struct ModelStorage: Encodable {
            let modelID: String, sizeGB: Double, lastAccessed: Nullable<Date>, usageFrequency: Nullable<Double>, storageTier: String
            enum CodingKeys: String, CodingKey {
                case modelID = "model_id", sizeGB = "size_gb", lastAccessed = "last_accessed", usageFrequency = "usage_frequency"
                case storageTier = "storage_tier"
            }
        }
        struct Cleanup: Encodable {
            let potentialSavingsGB: Double, safeToRemoveCount: Int, candidates: [String]
            enum CodingKeys: String, CodingKey {
                case potentialSavingsGB = "potential_savings_gb", safeToRemoveCount = "safe_to_remove_count", candidates
            }
        }
        let storageSummary: Summary
        let modelsStorage: [ModelStorage]
        let cleanupSuggestions: Cleanup
        let pagination: Pagination?
        enum CodingKeys: String, CodingKey {
            case storageSummary = "storage_summary", modelsStorage = "models_storage", cleanupSuggestions = "cleanup_suggestions", pagination
        }
    }

    /// `storage_tier` has no real signal (one local tier): `hot` when used in the last 7 days,
    /// `warm` in the last 30, else `cold`.
    static func tier(lastAccess: Date?, now: Date) -> String {
        guard let lastAccess else { return "cold" }
        let days = now.timeIntervalSince(lastAccess) / 86400
        return days <= 7 ? "hot" : days <= 30 ? "warm" : "cold"
    }

    /// The storage report; `models_storage` is paginable.
    func storage(_ page: PageRequest) throws -> Response {
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
        return try JSONResponse.make(StorageReport(
            storageSummary: .init(totalCapacityGB: Double(figures.capacity) / 1e9, usedSpaceGB: Double(usage.totalBytes) / 1e9,
                                  availableSpaceGB: Double(figures.available) / 1e9, usagePercent: figures.usagePercent,
                                  modelsCount: usage.models.count),
            modelsStorage: shown,
            cleanupSuggestions: .init(potentialSavingsGB: Double(plan.bytesReclaimable) / 1e9, safeToRemoveCount: plan.modelsRemoved.count,
                                      candidates: plan.modelsRemoved),
            pagination: pagination))
    }

    // MARK: - Metrics

    /// Prometheus text, from the state database's download totals (kept current by every
    /// process that shares MODELS_ROOT: CLI, mount, sidecar), the disk and the mounts' counters.
    /// Every family is declared (`# HELP`, `# TYPE`) even before its first sample.
    func metrics() throws -> Response {
        let registry = PrometheusCollectorRegistry()
        func name(_ metric: String, _ help: String) -> MetricNameDescriptor { MetricNameDescriptor(metricName: metric, unitName: "", helpText: help) }
        let declared: [(name: String, type: String, help: String)] = [
            ("model_downloads_total", "counter", "Downloads of model files by outcome (state database history)."),
            ("model_errors_total", "counter", "Failed or corrupt downloads by error type."),
            ("model_storage_bytes_used", "gauge", "Bytes on disk per model family (shared blobs counted per model)."),
        ]
        let descriptors = declared.map { name($0.name, $0.help) }
        let (downloads, errors, storageUsed) = (descriptors[0], descriptors[1], descriptors[2])
        let totals = try engine.state(create: false)?.downloadTotals() ?? StateStore.DownloadTotals()
        for row in totals.rows {
            let status = row.outcome == "completed" ? "completed" : row.outcome == "cancelled" ? "cancelled" : "failed"
            registry.makeCounter(descriptor: downloads, labels: [("model", row.model), ("status", status)]).increment(by: row.count)
            if row.outcome != "completed" && row.outcome != "cancelled" {
                let type = row.outcome == "corrupt" ? "CHECKSUM_FAIL" : "DOWNLOAD_FAILED"
                registry.makeCounter(descriptor: errors, labels: [("type", type), ("model", row.model)]).increment(by: row.count)
            }
        }
        if let usage = try? DiskUsage.measure(engine.resolver) {
            var bytesByFamily: [String: Int64] = [:]
            for model in usage.models { bytesByFamily[String(model.directory.split(separator: "@").first ?? ""), default: 0] += model.bytes }
            for (family, bytes) in bytesByFamily {
                registry.makeGauge(descriptor: storageUsed, labels: [("family", family)]).set(Double(bytes))
            }
            registry.makeGauge(descriptor: name("wan_cache_bytes", "Bytes under MODELS_ROOT (shared blobs once).")).set(Double(usage.totalBytes))
        }
        let pinned = (try engine.state(create: false)?.allUsage().filter(\.pinned).count) ?? 0
        registry.makeGauge(descriptor: name("wan_pinned_models", "Pinned models.")).set(Double(pinned))
        registry.makeGauge(descriptor: name("wan_active_downloads", "Downloads of this sidecar queued, running or paused."))
            .set(Double(catalog.downloads.all().filter(\.status.isActive).count))

        // The schedules (this process).
        let runs = maintenance.snapshot
        registry.makeCounter(descriptor: name("wan_gc_runs_total", "Scheduled garbage collections.")).increment(by: Int64(runs.gcRuns))
        registry.makeCounter(descriptor: name("wan_gc_bytes_reclaimed_total", "Bytes freed by scheduled garbage collection."))
            .increment(by: runs.gcBytesReclaimed)
        let checks = name("wan_health_checks_total", "Models re-hashed by scheduled health passes, by result.")
        registry.makeCounter(descriptor: checks, labels: [("result", "ok")]).increment(by: Int64(runs.checksOK))
        registry.makeCounter(descriptor: checks, labels: [("result", "failed")]).increment(by: Int64(runs.checksFailed))
        registry.makeGauge(descriptor: name("wan_abandoned_partials", "Partial downloads no process has touched for an hour."))
            .set(Double(runs.abandonedPartials))

        var text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
        for family in declared where !text.contains("# TYPE \(family.name) ") {
            text += "# HELP \(family.name) \(family.help)\n# TYPE \(family.name) \(family.type)\n"
        }
        text += Self.histogram("model_download_duration_seconds", help: "Duration of completed file downloads.",
                               bounds: StateStore.downloadDurationBuckets, counts: totals.durationCounts, sum: totals.durationSum)
        text += Self.mountMetrics(MountReadMetrics.live(engine.resolver))
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    /// A histogram in the text format from per-bucket counts (not cumulative; one more than
    /// `bounds`, the last past every bound), summed without ever overflowing.
    static func histogram(_ name: String, help: String, bounds: [Double], counts: [Int64], sum: Double) -> String {
        var lines = ["# HELP \(name) \(help)", "# TYPE \(name) histogram"]
        var cumulative: Int64 = 0
        for (index, bound) in bounds.enumerated() {
            cumulative = cumulative.addingClamped(max(0, counts.indices.contains(index) ? counts[index] : 0))
            lines.append("\(name)_bucket{le=\"\(bound)\"} \(cumulative)")
        }
        cumulative = cumulative.addingClamped(max(0, counts.indices.contains(bounds.count) ? counts[bounds.count] : 0))
        lines += ["\(name)_bucket{le=\"+Inf\"} \(cumulative)", "\(name)_sum \(sum)", "\(name)_count \(cumulative)"]
        return lines.joined(separator: "\n") + "\n"
    }

    /// The read metrics the live mounts publish, summed over mounts, in the text format
    /// (written here: the histogram arrives as bucket counts, which swift-prometheus cannot take).
    static func mountMetrics(_ mounts: [MountReadMetrics]) -> String {
        var lines: [String] = []
        // Counts from files other processes wrote: summed without ever overflowing.
        func sum(_ value: (MountReadMetrics) -> Int64) -> Int64 { mounts.reduce(0) { $0.addingClamped(max(0, value($1))) } }
        func sum(_ value: (MountReadMetrics) -> Double) -> Double { mounts.reduce(0) { $0 + value($1) } }
        lines += ["# HELP wan_read_bytes_total Bytes served through the mounts, by whether they were cached or had to be fetched.",
                  "# TYPE wan_read_bytes_total counter",
                  "wan_read_bytes_total{served_from=\"cache\"} \(sum(\.bytesFromCache))",
                  "wan_read_bytes_total{served_from=\"origin\"} \(sum(\.bytesFromOrigin))",
                  "# HELP wan_cache_hits_total Reads through the mounts whose bytes were all present.",
                  "# TYPE wan_cache_hits_total counter",
                  "wan_cache_hits_total \(sum(\.cacheHits))",
                  "# HELP wan_cache_misses_total Reads through the mounts that waited for the origin.",
                  "# TYPE wan_cache_misses_total counter",
                  "wan_cache_misses_total \(sum(\.cacheMisses))",
                  "# HELP wan_inflight_fetches Files the mounts are fetching now.",
                  "# TYPE wan_inflight_fetches gauge",
                  "wan_inflight_fetches \(sum { Int64($0.inFlightFetches) })"]
        let buckets = MountReadMetrics.latencyBuckets
        let counts = (0...buckets.count).map { index in sum { $0.latencyCounts.indices.contains(index) ? $0.latencyCounts[index] : 0 } }
        return lines.joined(separator: "\n") + "\n"
            + histogram("wan_read_latency_seconds", help: "Time a read through a mount waited for its bytes.",
                        bounds: buckets, counts: counts, sum: sum(\.latencySum))
    }
}
