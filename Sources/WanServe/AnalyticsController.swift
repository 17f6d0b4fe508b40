import Foundation
import Hummingbird
import WanCache
import WanCore

/// `GET /api/v1/models/analytics[/{id}]`, `.../analytics/cleanup` and `.../analytics/performance`:
/// computed from the state database's use events (ensures and mount opens), download history
/// and verifications. Generation happens elsewhere, so generation times and success rates are
/// null (docs/sidecar.md).
struct AnalyticsController: Controller {
    let catalog: ModelCatalog
    var engine: CacheEngine { catalog.engine }

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.get("cleanup") { request, context in try await catalog.respond(to: request, context: context) { try cleanupAdvice(request) } }
        routes.get("performance") { request, context in try await catalog.respond(to: request, context: context) { try performance() } }
        routes.get { request, context in try await catalog.respond(to: request, context: context) { try usage(nil, request: request) } }
        routes.get(":model_id") { request, context in
            let id = try context.parameters.require("model_id")
            return try await catalog.respond(to: request, context: context) { try usage(id, request: request) }
        }
    }

    // MARK: - Usage

    struct Period: Encodable {
        let startDate: Date, endDate: Date, days: Int
    }

    struct DayUsage: Encodable {
        let date: String
        let uses: Int64
        let avgTime: Nullable<Double>
        let successRate: Nullable<Double>
    }

    struct ModelAnalytics: Encodable {
        let modelID: String
        let totalUses: Int64
        let usesPerDay: Double
        let averageGenerationTime: Nullable<Double>
        let successRate: Nullable<Double>
        let last30DaysUsage: [DayUsage]
        let peakUsageHours: [Int]
        enum CodingKeys: String, CodingKey {
            case modelID = "model_id", totalUses = "total_uses", usesPerDay = "uses_per_day"
            case averageGenerationTime = "average_generation_time", successRate = "success_rate"
            case last30DaysUsage = "last_30_days_usage", peakUsageHours = "peak_usage_hours"
        }
    }

    struct SystemAnalytics: Encodable {
        let totalUses: Int64, averageUsesPerDay: Double, mostUsedModel: Nullable<String>, activeModels: Int
    }

    struct Summary: Encodable {
        let totalGenerations: Int64, totalModelsUsed: Int, averageSuccessRate: Nullable<Double>
        let mostUsedModel: Nullable<String>, leastUsedModel: Nullable<String>
    }

    struct Report: ResponseEncodable {
        let timePeriod: Period
        let systemAnalytics: SystemAnalytics
        let modelAnalytics: [String: ModelAnalytics]
        let models: [String: ModelAnalytics]
        let summary: Summary
        let timestamp: Date
    }

    /// The period asked for: `start_date`/`end_date` (ISO dates), else `time_period_days`,
    /// else `period` (day, week, month, year); 30 days by default.
    static func period(_ query: [String: String], now: Date = Date()) throws -> ClosedRange<Date> {
        func date(_ field: String) throws -> Date? {
            guard let raw = query[field] else { return nil }
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = [.withFullDate]
            // From 1970 on: before 1582 Foundation's calendar is Julian, and no use is that old.
            guard let parsed = formatter.date(from: String(raw.prefix(10))), parsed.timeIntervalSince1970 >= 0,
                  parsed.timeIntervalSince1970 < 253_402_300_800 else {
                throw RequestBody.invalid(field, "must be an ISO date (YYYY-MM-DD) from 1970-01-01 to 9999-12-31, not '\(raw)'")
            }
            return parsed
        }
        let start = try date("start_date"), end = try date("end_date")
        if start != nil || end != nil {
            let upper = end.map { $0.addingTimeInterval(86399) } ?? now
            let lower = start ?? upper.addingTimeInterval(-30 * 86400)
            guard lower <= upper else { throw RequestBody.invalid("start_date", "is after end_date") }
            return lower...upper
        }
        var days = 30
        if let raw = query["time_period_days"] {
            guard let value = Int(raw), (1...3650).contains(value) else {
                throw RequestBody.invalid("time_period_days", "must be an integer from 1 to 3650, not '\(raw)'")
            }
            days = value
        } else if let raw = query["period"] {
            let map = ["day": 1, "week": 7, "month": 30, "year": 365]
            guard let value = map[raw] else { throw RequestBody.invalid("period", "must be one of day, week, month, year, not '\(raw)'") }
            days = value
        }
        return now.addingTimeInterval(-Double(days) * 86400)...now
    }

    static func query(_ request: Request) -> [String: String] {
        var query: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { query[String(key)] = String(value) }
        return query
    }

    func usage(_ id: String?, request: Request) throws -> Report {
        let range = try Self.period(Self.query(request))
        let keys = try id.map { [DownloadManager.key(try catalog.spec($0))] } ?? catalog.specs().map(DownloadManager.key)
        let events = try engine.state(create: false)?.useEvents(in: range) ?? []
        let days = max(1, Int((range.upperBound.timeIntervalSince(range.lowerBound) / 86400).rounded()))
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? .current
        let dayFormatter = DateFormatter()
        dayFormatter.calendar = calendar
        dayFormatter.timeZone = calendar.timeZone
        dayFormatter.dateFormat = "yyyy-MM-dd"
        // The last (up to) 30 days of the period, every day listed (0 when unused).
        let lastDays = (0..<min(30, days)).reversed().map { dayFormatter.string(from: range.upperBound.addingTimeInterval(-Double($0) * 86400)) }

        var analytics: [String: ModelAnalytics] = [:]
        for key in keys {
            let mine = events.filter { $0.model == key }
            let total = mine.reduce(0) { $0 + $1.uses }
            var perDay: [String: Int64] = [:], perHour: [Int: Int64] = [:]
            for event in mine {
                perDay[dayFormatter.string(from: event.at), default: 0] += event.uses
                perHour[calendar.component(.hour, from: event.at), default: 0] += event.uses
            }
            let peaks = perHour.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.prefix(3).map(\.key)
            analytics[key] = ModelAnalytics(
                modelID: key, totalUses: total, usesPerDay: (Double(total) / Double(days) * 100).rounded() / 100,
                averageGenerationTime: Nullable(nil), successRate: Nullable(nil),
                last30DaysUsage: lastDays.map { DayUsage(date: $0, uses: perDay[$0] ?? 0, avgTime: Nullable(nil), successRate: Nullable(nil)) },
                peakUsageHours: peaks)
        }
        let used = analytics.values.filter { $0.totalUses > 0 }.sorted { ($0.totalUses, $1.modelID) > ($1.totalUses, $0.modelID) }
        let total = used.reduce(0) { $0 + $1.totalUses }
        return Report(
            timePeriod: Period(startDate: range.lowerBound, endDate: range.upperBound, days: days),
            systemAnalytics: SystemAnalytics(totalUses: total, averageUsesPerDay: (Double(total) / Double(days) * 100).rounded() / 100,
                                             mostUsedModel: Nullable(used.first?.modelID), activeModels: used.count),
            modelAnalytics: analytics, models: analytics,
            summary: Summary(totalGenerations: total, totalModelsUsed: used.count, averageSuccessRate: Nullable(nil),
                             mostUsedModel: Nullable(used.first?.modelID), leastUsedModel: Nullable(used.last?.modelID)),
            timestamp: Date())
    }

    // MARK: - Cleanup recommendations

    struct Recommendation: Encodable {
        let modelID: String, reason: String, lastUsed: Nullable<Date>, sizeMB: Double, usageCount: Int64, confidence: Double, action: String
    }

    struct CleanupAdvice: ResponseEncodable {
        let recommendations: [Recommendation]
        let potentialSavingsGB: Double, currentUsageGB: Double, targetUsageGB: Double
        let pagination: Pagination?
    }

    /// Every model on disk with what to do about it: `safe_to_remove` (idle at least
    /// `min_unused_days`), `consider_removal` (idle half as long, or the cache is over
    /// `storage_threshold_gb`), or `keep` (pinned, in use, or recently used).
    func cleanupAdvice(_ request: Request) throws -> CleanupAdvice {
        let query = Self.query(request)
        let page = try PageRequest(query)
        var minDays = 30
        if let raw = query["min_unused_days"] {
            guard let value = Int(raw), (0...36500).contains(value) else {
                throw RequestBody.invalid("min_unused_days", "must be an integer from 0 to 36500, not '\(raw)'")
            }
            minDays = value
        }
        var threshold = catalog.settings.current.maxStorageGB
        if let raw = query["storage_threshold_gb"] {
            guard let value = Double(raw) else { throw RequestBody.invalid("storage_threshold_gb", "must be a number, not '\(raw)'") }
            threshold = try RequestBody.bounded(value, "storage_threshold_gb", 0...1e9)
        }
        let usage = try DiskUsage.measure(engine.resolver)
        let state = try engine.state(create: false)
        let current = Double(usage.totalBytes) / 1e9
        let over = threshold.map { current > $0 } ?? false
        let now = Date()
        let recommendations = usage.models.map { model -> Recommendation in
            let record = (try? state?.usage(model: model.directory)) ?? nil
            let idleDays = record?.lastAccess.map { now.timeIntervalSince($0) / 86400 }
            let uses = record?.useCount ?? 0
            let (action, reason, confidence): (String, String, Double) =
                if record?.pinned == true { ("keep", "pinned", 1) }
                else if engine.locks.isModelLocked(model.directory) { ("keep", "in use", 1) }
                else if (idleDays ?? .infinity) >= Double(minDays) {
                    ("safe_to_remove", idleDays.map { "unused for \(Int($0)) days" } ?? "never used", uses == 0 ? 0.95 : 0.8)
                } else if over || (idleDays ?? 0) >= Double(minDays) / 2 {
                    ("consider_removal", over ? "cache over \(threshold ?? 0) GB" : "unused for \(Int(idleDays ?? 0)) days", 0.5)
                } else { ("keep", "used \(Int(idleDays ?? 0)) days ago", 0.9) }
            return Recommendation(modelID: model.directory, reason: reason, lastUsed: Nullable(record?.lastAccess),
                                  sizeMB: Double(model.bytes) / 1e6, usageCount: uses, confidence: confidence, action: action)
        }
        let savings = recommendations.filter { $0.action == "safe_to_remove" }.reduce(0) { $0 + $1.sizeMB } / 1000
        let (shown, pagination) = try page.apply(recommendations)
        return CleanupAdvice(recommendations: shown, potentialSavingsGB: savings, currentUsageGB: current,
                                                   targetUsageGB: threshold ?? max(0, current - savings), pagination: pagination)
    }

    // MARK: - Performance

    struct Trend: Encodable {
        let currentScore: Nullable<Double>, trend: String, last7DaysAvg: Nullable<Double>, last30DaysAvg: Nullable<Double>
        let performanceIssues: [String], recommendations: [String]
        enum CodingKeys: String, CodingKey {
            case currentScore = "current_score", trend, last7DaysAvg = "last_7_days_avg", last30DaysAvg = "last_30_days_avg"
            case performanceIssues = "performance_issues", recommendations
        }
    }

    struct SystemPerformance: Encodable {
        let overallScore: Nullable<Double>, downloadSuccessRate: Nullable<Double>, averageDownloadSpeedMbps: Nullable<Double>
        let healthCheckSuccessRate: Nullable<Double>
    }

    struct Performance: ResponseEncodable {
        let performanceTrends: [String: Trend]
        let systemPerformance: SystemPerformance
    }

    /// Download speed per model (Mbps, completed downloads) is the score's real signal here:
    /// `current_score` is the model's last 7 days' average over its 30 days' average (1 =
    /// as usual), `trend` compares the two.
    func performance() throws -> Performance {
        let state = try engine.state(create: false)
        let history = try state?.downloads(limit: 100_000) ?? []
        let checks = try state?.verifications(limit: 100_000) ?? []
        let now = Date()
        func mbps(_ records: [StateStore.DownloadRecord]) -> Double? {
            let done = records.filter { $0.outcome == "completed" && $0.duration > 0 }
            let seconds: Double = done.reduce(0) { $0 + $1.duration }
            let bytes: Int64 = done.reduce(0) { $0 + $1.bytes }
            guard seconds > 0 else { return nil }
            let rate = Double(bytes) * 8 / 1e6 / seconds
            return (rate * 100).rounded() / 100
        }
        func ratio(_ week: Double?, _ month: Double?) -> Double? {
            guard let week, let month else { return nil }
            guard month > 0 else { return 1 }
            return (min(1, week / month) * 100).rounded() / 100
        }
        var trends: [String: Trend] = [:]
        for key in try catalog.specs().map(DownloadManager.key) {
            let mine = history.filter { $0.model == key }
            let week = mbps(mine.filter { now.timeIntervalSince($0.finishedAt) <= 7 * 86400 })
            let month = mbps(mine.filter { now.timeIntervalSince($0.finishedAt) <= 30 * 86400 })
            let failures = mine.filter { $0.outcome != "completed" && now.timeIntervalSince($0.finishedAt) <= 7 * 86400 }.count
            let score = ratio(week, month)
            let trend = switch (week, month) {
            case let (w?, m?) where w > m * 1.1: "improving"
            case let (w?, m?) where w < m * 0.9: "degrading"
            default: "stable"
            }
            trends[key] = Trend(currentScore: Nullable(score), trend: trend, last7DaysAvg: Nullable(week), last30DaysAvg: Nullable(month),
                                performanceIssues: failures > 0 ? ["\(failures) failed download(s) in the last 7 days"] : [],
                                recommendations: trend == "degrading" ? ["check the sources with wan models test-sources"] : [])
        }
        let finished = history.filter { $0.outcome != "cancelled" }
        let scores = trends.values.compactMap(\.currentScore.value)
        return Performance(
            performanceTrends: trends,
            systemPerformance: SystemPerformance(
                overallScore: Nullable(scores.isEmpty ? nil : scores.reduce(0, +) / Double(scores.count)),
                downloadSuccessRate: Nullable(finished.isEmpty ? nil : Double(finished.filter { $0.outcome == "completed" }.count) / Double(finished.count)),
                averageDownloadSpeedMbps: Nullable(mbps(history)),
                healthCheckSuccessRate: Nullable(checks.isEmpty ? nil : Double(checks.filter(\.ok).count) / Double(checks.count))))
    }
}
