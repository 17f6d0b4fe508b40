import Foundation
import Hummingbird
import Synchronization
import WanCache
import WanCore

/// `POST /api/v1/models/fallback/suggest` and `POST /api/v1/models/fallback/queue` (+ `GET
/// .../queue/{queue_id}`): alternatives from the manifest's metadata and what is available now,
/// and requests that wait for a model.
///
/// Compatibility is a documented heuristic (docs/sidecar.md), since no generation runs here:
/// task family (t2v, i2v, ti2v from the id) 0.5 / 0.35 / 0.1, resolution among the model's
/// `resolution_caps` 0.2 (0.1 when it lists none), available now 0.3 (downloading 0.15);
/// quality and speed compare the models' sizes.
final class FallbackController: Controller {
    let catalog: ModelCatalog
    private let queue = Mutex<[QueueEntry]>([])

    init(catalog: ModelCatalog) { self.catalog = catalog }

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.post("suggest") { request, _ in try await self.suggest(request) }
        routes.post("queue") { request, _ in try await self.enqueue(request) }
        routes.get("queue/:queue_id") { request, context in
            let id = try context.parameters.require("queue_id")
            return try await self.catalog.respond(to: request, context: context) { try self.entry(id) }
        }
    }

    // MARK: - Suggest

    /// Seed 003's flat fields and seed 002's nested ones; flat wins when both are sent.
    struct SuggestRequest: Decodable, Sendable {
        struct Requirements: Decodable {
            var quality: String?
            var speed: String?
            var modelType: String?
            var resolution: String?
            enum CodingKeys: String, CodingKey { case quality, speed, modelType = "model_type", resolution }
        }
        struct Preferences: Decodable {
            var maxWaitTimeMinutes: Double?
            var preferSmallerModels: Bool?
            enum CodingKeys: String, CodingKey { case maxWaitTimeMinutes = "max_wait_time_minutes", preferSmallerModels = "prefer_smaller_models" }
        }
        var requestedModel: String
        var quality: String?
        var speed: String?
        var resolution: String?
        var maxWaitMinutes: Double?
        var requirements: Requirements?
        var userPreferences: Preferences?
        enum CodingKeys: String, CodingKey {
            case requestedModel = "requested_model", quality, speed, resolution, maxWaitMinutes = "max_wait_minutes", requirements
            case userPreferences = "user_preferences"
        }
    }

    enum Quality: String, CaseIterable { case low, medium, high }
    enum Speed: String, CaseIterable { case fast, medium, slow }

    struct Suggestion: Encodable {
        let suggestedModel: String
        let compatibilityScore: Double
        let performanceDifference: Double
        let availabilityStatus: String
        let reason: String
        let estimatedQualityDifference: String
    }

    struct Strategy: Encodable {
        let strategyType: String
        let recommendedAction: String
        let alternativeModel: Nullable<String>
        let estimatedWaitTime: Nullable<Double>
        let userMessage: String
        let canQueueRequest: Bool
    }

    struct SuggestResponse: ResponseEncodable {
        let requestedModel: String
        let alternativeSuggestion: Nullable<Suggestion>
        let suggestions: [Suggestion]
        let fallbackStrategy: Strategy
        let waitTimeEstimate: Nullable<Double>
        let timestamp: Date
    }

    /// t2v, i2v or ti2v: the id's name up to its first `-` (the WAN2.2 naming), else the name.
    static func family(_ spec: ModelSpec) -> String {
        let name = spec.modelID.split(separator: "@").first.map(String.init) ?? spec.modelID
        return String(name.lowercased().split(separator: "-").first ?? "")
    }

    static func family(modelType: String) -> String? {
        switch modelType.lowercased() {
        case "text-to-video", "t2v": "t2v"
        case "image-to-video", "i2v": "i2v"
        case "text-image-to-video", "text-and-image-to-video", "ti2v": "ti2v"
        default: nil
        }
    }

    func suggest(_ request: Request) async throws -> SuggestResponse {
        let body = try await RequestBody.decode(SuggestRequest.self, from: request)
        return try await catalog.offload { [self] in try answerSuggestion(body) }
    }

    /// Scores the alternatives from the cache's state (blocking: on the pool).
    private func answerSuggestion(_ body: SuggestRequest) throws -> SuggestResponse {
        let quality: Quality = try RequestBody.oneOf(body.quality ?? body.requirements?.quality, "quality", default: .medium)
        let speed: Speed = try RequestBody.oneOf(body.speed ?? body.requirements?.speed, "speed", default: .medium)
        let resolution = body.resolution ?? body.requirements?.resolution ?? "1280x720"
        let maxWait = body.maxWaitMinutes ?? body.userPreferences?.maxWaitTimeMinutes
        if let maxWait { _ = try RequestBody.bounded(maxWait, "max_wait_minutes", 0...525_600) }   // up to a year
        let requested = try catalog.spec(body.requestedModel)
        let requestedKey = DownloadManager.key(requested)
        let wantedFamily = body.requirements?.modelType.flatMap(Self.family(modelType:)) ?? Self.family(requested)
        let smaller = body.userPreferences?.preferSmallerModels ?? false

        let suggestions = try catalog.specs().filter { DownloadManager.key($0) != requestedKey }.map { alternative in
            score(alternative, against: requested, family: wantedFamily, resolution: resolution, quality: quality, speed: speed, preferSmaller: smaller)
        }.sorted { ($0.compatibilityScore, $1.suggestedModel) > ($1.compatibilityScore, $0.suggestedModel) }

        let availability = catalog.availability(requested)
        let waitSeconds = try catalog.estimatedSeconds(requested)
        let waitMinutes = waitSeconds.map { ($0 / 60 * 10).rounded(.up) / 10 }
        let bestAvailable = suggestions.first { $0.availabilityStatus == "available" && $0.compatibilityScore >= 0.5 }
        let strategy: Strategy
        if availability == "available" {
            strategy = Strategy(strategyType: "alternative_model", recommendedAction: "use \(requestedKey): it is available now",
                                alternativeModel: Nullable(requestedKey), estimatedWaitTime: Nullable(0),
                                userMessage: "\(requestedKey) is available.", canQueueRequest: false)
        } else if ["downloading", "queued"].contains(availability), let waitMinutes, waitMinutes <= (maxWait ?? .infinity) {
            strategy = Strategy(strategyType: "queue_and_wait", recommendedAction: "queue the request until \(requestedKey) is downloaded",
                                alternativeModel: Nullable(bestAvailable?.suggestedModel), estimatedWaitTime: Nullable(waitMinutes),
                                userMessage: "\(requestedKey) is downloading; about \(waitMinutes) min left.", canQueueRequest: true)
        } else if let bestAvailable {
            strategy = Strategy(strategyType: "alternative_model", recommendedAction: "use \(bestAvailable.suggestedModel) instead",
                                alternativeModel: Nullable(bestAvailable.suggestedModel), estimatedWaitTime: Nullable(waitMinutes),
                                userMessage: "\(requestedKey) is \(availability); \(bestAvailable.suggestedModel) is available and compatible.",
                                canQueueRequest: !requested.sources.isEmpty)
        } else if !requested.sources.isEmpty && availability != "corrupted" {
            strategy = Strategy(strategyType: "download_and_retry", recommendedAction: "download \(requestedKey), then retry",
                                alternativeModel: Nullable(nil), estimatedWaitTime: Nullable(waitMinutes),
                                userMessage: "\(requestedKey) is \(availability); it can be downloaded" + (waitMinutes.map { " (about \($0) min)" } ?? "") + ".",
                                canQueueRequest: true)
        } else if let lower = suggestions.first(where: { $0.availabilityStatus == "available" }) {
            strategy = Strategy(strategyType: "reduce_requirements", recommendedAction: "use \(lower.suggestedModel) with lower requirements",
                                alternativeModel: Nullable(lower.suggestedModel), estimatedWaitTime: Nullable(nil),
                                userMessage: "Only \(lower.suggestedModel) is available; it may not meet every requirement.", canQueueRequest: false)
        } else {
            strategy = Strategy(strategyType: "hybrid_approach", recommendedAction: "repair or download a model first",
                                alternativeModel: Nullable(nil), estimatedWaitTime: Nullable(nil),
                                userMessage: "No compatible model is available now.", canQueueRequest: false)
        }
        if let alternative = strategy.alternativeModel.value, alternative != requestedKey,
           let chosen = suggestions.first(where: { $0.suggestedModel == alternative }) {
            catalog.downloads.events.publish(Event.FallbackSuggestion(
                requestedModel: requestedKey, suggestedModel: alternative, compatibilityScore: chosen.compatibilityScore,
                userActionRequired: true, timeoutSeconds: Int((maxWait ?? 5) * 60), timestamp: Date()))
        }
        return SuggestResponse(requestedModel: requestedKey, alternativeSuggestion: Nullable(suggestions.first),
                                                     suggestions: suggestions, fallbackStrategy: strategy,
                                                     waitTimeEstimate: Nullable(waitMinutes), timestamp: Date())
    }

    private func score(_ alternative: ModelSpec, against requested: ModelSpec, family: String, resolution: String,
                       quality: Quality, speed: Speed, preferSmaller: Bool) -> Suggestion {
        let key = DownloadManager.key(alternative)
        let altFamily = Self.family(alternative)
        var score = altFamily == family ? 0.5 : (altFamily == "ti2v" || family == "ti2v") ? 0.35 : 0.1
        let caps = alternative.resolutionCaps
        score += caps.isEmpty ? 0.1 : caps.contains(resolution) ? 0.2 : 0
        let availability = catalog.availability(alternative)
        score += availability == "available" ? 0.3 : availability == "downloading" ? 0.15 : 0
        let ratio = requested.totalSize > 0 ? Double(alternative.totalSize) / Double(requested.totalSize) : 1
        let qualityDifference = ratio >= 1.2 ? "better" : ratio >= 0.8 ? "similar" : ratio >= 0.4 ? "slightly_lower" : "lower"
        let performance = ((1 - ratio) * 100).rounded() / 100   // > 0: smaller, so faster
        if quality == .high { score -= qualityDifference == "lower" ? 0.2 : qualityDifference == "slightly_lower" ? 0.1 : 0 }
        if speed == .fast && performance > 0.2 { score += 0.05 }
        if preferSmaller && ratio < 1 { score += 0.05 }
        var reasons = [altFamily == family ? "same task (\(family))" : "different task (\(altFamily))"]
        if !caps.isEmpty { reasons.append(caps.contains(resolution) ? "supports \(resolution)" : "does not list \(resolution)") }
        reasons.append(availability)
        return Suggestion(suggestedModel: key, compatibilityScore: (min(1, max(0, score)) * 100).rounded() / 100,
                          performanceDifference: performance, availabilityStatus: availability, reason: reasons.joined(separator: ", "),
                          estimatedQualityDifference: qualityDifference)
    }

    // MARK: - Queue

    struct QueueEntry: Sendable {
        let id: String
        let model: String
        let priority: DownloadPriority
        let created: Date
        let expires: Date
        var served: Date?
    }

    struct QueueRequest: Decodable, Sendable {
        struct Work: Decodable {
            var prompt: String?
        }
        var modelID: String
        var request: Work?
        var priority: String?
        var maxWaitTimeMinutes: Double?
        enum CodingKeys: String, CodingKey { case modelID = "model_id", request, priority, maxWaitTimeMinutes = "max_wait_time_minutes" }
    }

    struct Queued: ResponseEncodable {
        let success: Bool
        let queueID: String
        let position: Int
        let estimatedWaitTimeMinutes: Double
        let estimatedStartTime: Date
    }

    /// Queues a request for a model: its download starts (or is raised to this priority), and
    /// the entry is served once the model is COMPLETE, or expires after its wait.
    func enqueue(_ request: Request) async throws -> Queued {
        let body = try await RequestBody.decode(QueueRequest.self, from: request)
        return try await catalog.offload { [self] in try queueRequest(body) }
    }

    /// Starts or raises the download and files the entry (blocking: on the pool).
    private func queueRequest(_ body: QueueRequest) throws -> Queued {
        let priority: DownloadPriority = try RequestBody.oneOf(body.priority, "priority", default: .normal)
        let wait = body.maxWaitTimeMinutes ?? 60
        guard wait > 0 else { throw RequestBody.invalid("max_wait_time_minutes", "must be more than 0 minutes") }
        _ = try RequestBody.bounded(wait, "max_wait_time_minutes", 0...10080)
        let spec = try catalog.spec(body.modelID)
        let key = DownloadManager.key(spec)
        let now = Date()
        if try catalog.engine.status(spec).state != .complete {
            if let running = catalog.downloads.snapshot(key), running.status.isActive {
                if priority.rank < running.priority.rank { _ = try catalog.downloads.setPriority(key, priority) }
                if running.status == .paused { _ = try catalog.downloads.resume(key) }
            } else {
                _ = try catalog.downloads.start(spec, priority: priority, bandwidth: catalog.settings.defaultBandwidth,
                                                maxRetries: catalog.settings.current.maxRetries)
            }
        }
        let entry = QueueEntry(id: generatedID("queue"), model: key, priority: priority, created: now,
                               expires: now.addingTimeInterval(wait * 60))
        queue.withLock { $0.append(entry) }
        let position = try refresh().firstIndex { $0.id == entry.id }.map { $0 + 1 } ?? 0
        let seconds = try catalog.estimatedSeconds(spec) ?? 0
        return Queued(success: true, queueID: entry.id, position: position,
                                            estimatedWaitTimeMinutes: (seconds / 60 * 10).rounded(.up) / 10,
                                            estimatedStartTime: now.addingTimeInterval(seconds))
    }

    struct QueueStatus: ResponseEncodable {
        let queueID: String, modelID: String, status: String, position: Nullable<Int>, priority: String
        let createdAt: Date, expiresAt: Date, servedAt: Nullable<Date>
    }

    /// One entry: `waiting` (with its position), `ready` (the model is complete) or `expired`.
    func entry(_ id: String) throws -> QueueStatus {
        let waiting = try refresh()
        guard let entry = queue.withLock({ $0.first { $0.id == id } }) else { throw APIError.notFound("queue entry \(id)") }
        let position = waiting.firstIndex { $0.id == id }.map { $0 + 1 }
        let status = entry.served != nil ? "ready" : position != nil ? "waiting" : "expired"
        return QueueStatus(queueID: id, modelID: entry.model, status: status, position: Nullable(position),
                                                 priority: entry.priority.rawValue, createdAt: entry.created, expiresAt: entry.expires,
                                                 servedAt: Nullable(entry.served))
    }

    /// Marks entries whose model is complete as served, forgets old ones, and returns the
    /// waiting entries in queue order (priority, then arrival).
    private func refresh(now: Date = Date()) throws -> [QueueEntry] {
        let models = Set(queue.withLock { $0.filter { $0.served == nil }.map(\.model) })
        var complete = Set<String>()
        for model in models where (try? catalog.engine.status(catalog.spec(model)).state) == .complete { complete.insert(model) }
        return queue.withLock { entries in
            entries.removeAll { now.timeIntervalSince($0.expires) > 86400 }
            for index in entries.indices where entries[index].served == nil && complete.contains(entries[index].model) {
                entries[index].served = now
            }
            return entries.filter { $0.served == nil && $0.expires > now }
                .sorted { ($0.priority.rank, $0.created) < ($1.priority.rank, $1.created) }
        }
    }
}
