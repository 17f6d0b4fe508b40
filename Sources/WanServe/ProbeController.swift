import Foundation
import Hummingbird
import WanCache
import WanCore
import Prometheus
import WanSystem

/// The probes orchestrators and scrapers poll: `GET /health/models[/{id}]` (from the status
/// board: cheap under any load) and `GET /metrics` (from counters: no scan of history).
struct ProbeController: Controller {
    let catalog: ModelCatalog
    let config: OrchestratorConfig
    let maintenance: Maintenance

    var engine: CacheEngine { catalog.engine }

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.get("health/models") { _, _ in try await healthOfAllModels().answer }
        routes.get("health/models/:model_id") { request, context in
            let id = try context.parameters.require("model_id")
            return try await catalog.respond(to: request, context: context) { try healthModels(id).readiness }
        }
        if config.enableMetrics {
            routes.get("metrics") { request, context in try await catalog.respond(to: request, context: context) { try metrics() } }
        }
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
    }

    struct HealthReport: ResponseEncodable {
        let status: String
        let timestamp: Date
        let models: [String: HealthEntry]

        /// 503 when unhealthy: a readiness probe reads the status code.
        var answer: EditedResponse<HealthReport> { with(status: status == "unhealthy" ? .serviceUnavailable : .ok) }
        /// One model's readiness: 200 only when it is complete and verified, 503 otherwise (its
        /// state in the body), so an orchestrator's probe can wait for it.
        var readiness: EditedResponse<HealthReport> { with(status: status == "healthy" ? .ok : .serviceUnavailable) }
    }

    /// 200 `healthy` (every model complete) or `degraded`; 503 `unhealthy` when MODELS_ROOT
    /// or the state database cannot be read (a readiness probe). Measured now, on the pool.
    func healthModels(_ id: String?) throws -> HealthReport {
        let specs = try id.map { [try catalog.spec($0)] } ?? catalog.specs()
        return healthReport(specs.map { (spec: $0, status: try? engine.status($0)) }, databaseReadable: (try? engine.state(create: true)) != nil,
                                at: Date())
    }

    /// Every model's health from the status board (at most about a second old, from memory:
    /// the probe stays cheap under any load), or measured on the pool when the board is stale.
    func healthOfAllModels() async throws -> HealthReport {
        if let snapshot = catalog.board.current() {
            return healthReport(snapshot.models, databaseReadable: snapshot.databaseReadable, at: snapshot.takenAt)
        }
        return try await catalog.offload { try healthModels(nil) }
    }

    private func healthReport(_ models: [(spec: ModelSpec, status: ModelStatus?)], databaseReadable: Bool, at time: Date) -> HealthReport {
        var entries: [String: HealthEntry] = [:]
        var unhealthy = !databaseReadable
        for (spec, status) in models {
            guard let status else {
                unhealthy = true
                continue
            }
            entries[spec.modelID] = HealthEntry(modelID: spec.modelID, variant: Nullable(spec.variant), state: status.state.rawValue,
                                                bytesNeeded: status.bytesNeeded, missingFiles: status.missingFiles,
                                                lastVerified: Nullable(status.lastVerified), healthStatus: CacheHealth.ModelHealth.health(status.state))
        }
        let overall = unhealthy ? "unhealthy" : entries.values.allSatisfy { $0.healthStatus == "healthy" } ? "healthy" : "degraded"
        return HealthReport(status: overall, timestamp: time, models: entries)
    }

    // MARK: - Metrics

    /// Prometheus text, from the state database's download totals (kept current by every
    /// process that shares MODELS_ROOT: CLI, mount, sidecar), the disk usage the availability watcher measures
    /// every ten seconds (never a walk of the tree per scrape) and the mounts' counters.
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
        if let usage = catalog.board.diskUsage() {   // measured by the watcher: no walk per scrape
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
