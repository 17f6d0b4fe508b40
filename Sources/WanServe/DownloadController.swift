import Foundation
import Hummingbird
import WanCore

/// `POST /api/v1/models/download/manage`, `GET /api/v1/models/download/progress/{id}` and
/// `GET /api/v1/models/download/active` over the ``DownloadManager``.
struct DownloadController: Controller {
    let catalog: ModelCatalog
    var downloads: DownloadManager { catalog.downloads }

    func addRoutes(to routes: RouteCollection<SidecarContext>) {
        routes.post("manage") { request, _ in try await manage(request) }
        routes.get("progress/:model_id") { request, context in
            let id = try context.parameters.require("model_id")
            return try await catalog.respond(to: request, context: context) { try progress(id) }
        }
        routes.get("active") { request, context in try await catalog.respond(to: request, context: context) { try active(request) } }
    }

    enum Action: String, CaseIterable { case start, pause, resume, cancel, priority, bandwidth }

    /// Both seeds' request fields (002: start + `max_retries`; 003: the other actions).
    struct ManageRequest: Decodable, Sendable {
        let modelID: String
        let action: String
        let maxRetries: Int?
        let priority: String?
        let bandwidthLimitMbps: Double?
        enum CodingKeys: String, CodingKey {
            case modelID = "model_id", action, maxRetries = "max_retries", priority, bandwidthLimitMbps = "bandwidth_limit_mbps"
        }
    }

    /// Seed 003's answer with seed 002's keys beside it.
    struct ManageResponse: ResponseEncodable {
        let success: Bool
        let message: String
        let modelID: String
        let action: String
        let currentStatus: String
        let progressPercent: Double
        let timestamp: Date
        let newStatus: String
        let downloadID: Nullable<String>
        let estimatedCompletion: Nullable<Date>
    }

    func manage(_ request: Request) async throws -> ManageResponse {
        let body = try await RequestBody.decode(ManageRequest.self, from: request)
        let action: Action = try RequestBody.oneOf(body.action, "action")
        let spec = try catalog.spec(body.modelID)
        let key = DownloadManager.key(spec)
        let snapshot: DownloadSnapshot?
        let message: String
        switch action {
        case .pause:
            snapshot = try await downloads.pause(key)
            message = "Download paused for \(key)"
        case .cancel:
            snapshot = try await downloads.cancel(key)
            message = "Download cancelled for \(key)"
        default:
            (snapshot, message) = try await catalog.offload { [self] in try act(action, body, spec) }
        }
        let (status, available) = try await catalog.offload { [catalog] in
            let detail = try catalog.detail(spec)
            return (detail.availabilityStatus, detail.isAvailable)
        }
        let eta = snapshot?.etaSeconds.map { Date().addingTimeInterval(Double($0)) }
        return ManageResponse(
            success: true, message: message, modelID: key, action: action.rawValue, currentStatus: status,
            progressPercent: snapshot?.progressPercent ?? (available ? 100 : 0), timestamp: Date(),
            newStatus: (snapshot?.status ?? .completed).rawValue,
            downloadID: Nullable(action == .start ? snapshot?.id : nil), estimatedCompletion: Nullable(action == .start ? eta : nil))
    }

    /// The actions that do not wait for transfers to stop (blocking: on the pool).
    private func act(_ action: Action, _ body: ManageRequest, _ spec: ModelSpec) throws -> (DownloadSnapshot?, String) {
        let key = DownloadManager.key(spec)
        switch action {
        case .start:
            let priority: DownloadPriority = try RequestBody.oneOf(body.priority, "priority", default: .normal)
            let retries = body.maxRetries ?? catalog.settings.current.maxRetries
            guard (0...20).contains(retries) else { throw RequestBody.invalid("max_retries", "must be from 0 to 20, not \(retries)") }
            if try catalog.engine.status(spec).state == .complete {
                return (nil, "\(key) is already downloaded and verified")
            }
            let started = try downloads.start(spec, priority: priority, bandwidth: try bandwidth(body, required: false), maxRetries: retries)
            return (started, "Download started for \(key)")
        case .resume:
            return (try downloads.resume(key), "Download resumed for \(key)")
        case .priority:
            let priority: DownloadPriority = try RequestBody.oneOf(body.priority, "priority")
            return (try downloads.setPriority(key, priority), "Priority of \(key) set to \(priority.rawValue)")
        case .bandwidth:
            let limit = try bandwidth(body, required: true)
            let changed = try downloads.setBandwidth(key, limit)
            return (changed, limit == 0 ? "Bandwidth of \(key) unlimited" : "Bandwidth of \(key) limited to \(body.bandwidthLimitMbps ?? 0) Mbps")
        case .pause, .cancel:   // they wait for transfers to stop: manage() runs them
            throw APIError(.internalServerError, code: "INTERNAL_ERROR", message: "\(action.rawValue) is not run on the blocking pool")
        }
    }

    /// `bandwidth_limit_mbps` in bytes per second (megabits: × 125 000); 0 = unlimited. A start
    /// without one gets the configured default (`downloads.bandwidth_limit_mbps`).
    private func bandwidth(_ body: ManageRequest, required: Bool) throws -> Int64 {
        guard let mbps = body.bandwidthLimitMbps else {
            if required { throw RequestBody.invalid("bandwidth_limit_mbps", "is required for action bandwidth") }
            return catalog.settings.defaultBandwidth
        }
        let limit = try RequestBody.bounded(mbps, "bandwidth_limit_mbps", 0...1e6)   // up to 1 Tbit/s; 0 = unlimited
        return limit == 0 ? 0 : max(1, Int64(limit * 125_000))
    }

    // MARK: - Progress

    struct Progress: ResponseEncodable {
        let modelID: String
        let status: String
        let progressPercent: Double
        let downloadedMB: Double
        let totalMB: Double
        let speedMbps: Double
        let etaSeconds: Nullable<Int>
        let retryCount: Int
        let maxRetries: Int
        let errorMessage: Nullable<String>
        let canPause: Bool
        let canResume: Bool
        let canCancel: Bool

        init(_ s: DownloadSnapshot) {
            modelID = s.modelID
            status = s.status.rawValue
            progressPercent = s.progressPercent
            downloadedMB = Double(s.bytesDone) / 1e6
            totalMB = Double(s.bytesTotal) / 1e6
            speedMbps = s.speedMbps
            etaSeconds = Nullable(s.etaSeconds)
            retryCount = s.retryCount
            maxRetries = s.maxRetries
            errorMessage = Nullable(s.error)
            canPause = s.status == .queued || s.status == .downloading
            canResume = s.status == .paused || s.status == .failed
            canCancel = s.status.isActive
        }
    }

    /// The download's progress; a complete model that this sidecar did not download reports
    /// COMPLETED at 100; a model never downloaded here is 404.
    func progress(_ id: String) throws -> Progress {
        let spec = try catalog.spec(id)
        let key = DownloadManager.key(spec)
        if let snapshot = downloads.snapshot(key) { return Progress(snapshot) }
        let status = try catalog.engine.status(spec)
        guard status.state == .complete else {
            throw APIError(.notFound, code: "NOT_FOUND", message: "no download of \(key) (start one with action start)")
        }
        return Progress(DownloadSnapshot(
            id: "", modelID: key, status: .completed, priority: .normal, bandwidthLimit: 0, bytesDone: status.bytesTotal,
            bytesTotal: status.bytesTotal, speed: 0, retryCount: 0, maxRetries: catalog.engine.config.retryAttempts, error: nil,
            queuePosition: nil, startedAt: Date()))
    }

    // MARK: - Active

    struct ActiveItem: Encodable {
        let modelID: String
        let downloadID: String
        let status: String
        let priority: String
        let progressPercent: Double
        let speedMbps: Nullable<Double>
        let etaSeconds: Nullable<Int>
        let queuePosition: Nullable<Int>
        let bandwidthLimitMbps: Double
    }

    struct Active: ResponseEncodable {
        let activeDownloads: [ActiveItem]
        let totalActive: Int
        let totalBandwidthUsageMbps: Double
        let pagination: Pagination?
    }

    /// Queued, running and paused downloads (queued ones in queue order), paginable.
    func active(_ request: Request) throws -> Active {
        let page = try PageRequest(request: request)
        let live = downloads.all().filter(\.status.isActive)
        let items = live.map { s in
            ActiveItem(modelID: s.modelID, downloadID: s.id, status: s.status.rawValue, priority: s.priority.rawValue,
                       progressPercent: s.progressPercent,
                       speedMbps: Nullable(s.status == .downloading ? s.speedMbps : nil), etaSeconds: Nullable(s.etaSeconds),
                       queuePosition: Nullable(s.queuePosition), bandwidthLimitMbps: Double(s.bandwidthLimit) / 125_000)
        }
        let (shown, pagination) = try page.apply(items)
        let usage = live.filter { $0.status == .downloading }.reduce(0) { $0 + $1.speed } * 8 / 1e6
        return Active(activeDownloads: shown, totalActive: live.count,
                                            totalBandwidthUsageMbps: (usage * 100).rounded() / 100, pagination: pagination)
    }
}
