import Foundation
import NIOPosix
import Synchronization
import WanCache
import WanCore
import WanSources

/// Where a download managed by the sidecar stands (seed 002's upper-case values).
enum DownloadStatus: String, Sendable, Codable {
    case queued = "QUEUED", downloading = "DOWNLOADING", paused = "PAUSED"
    case completed = "COMPLETED", failed = "FAILED", cancelled = "CANCELLED"

    /// Still to run, running, or resumable.
    var isActive: Bool { self == .queued || self == .downloading || self == .paused }

    /// The `availability_status` a model shows while its download is in this state (nil: the cache's own).
    var availability: String? {
        switch self {
        case .queued: "queued"
        case .downloading: "downloading"
        case .paused: "paused"
        case .failed: "failed"
        case .completed, .cancelled: nil
        }
    }
}

/// Download priority (seed 003): the queue runs `critical` first, then `high`, `normal`, `low`.
enum DownloadPriority: String, Sendable, CaseIterable, Codable {
    case critical, high, normal, low

    var rank: Int { Self.allCases.firstIndex(of: self) ?? 2 }
}

/// What the API reports about one download.
struct DownloadSnapshot: Sendable {
    let id: String
    let modelID: String
    let status: DownloadStatus
    let priority: DownloadPriority
    /// Bytes per second; 0 = unlimited.
    let bandwidthLimit: Int64
    let bytesDone: Int64
    let bytesTotal: Int64
    /// Bytes per second over the last 5 s (0 when not downloading).
    let speed: Double
    let retryCount: Int
    let maxRetries: Int
    let error: String?
    /// 1-based place among the queued downloads (nil unless queued).
    let queuePosition: Int?
    let startedAt: Date

    var progressPercent: Double { bytesTotal == 0 ? 100 : (Double(bytesDone) / Double(bytesTotal) * 1000).rounded() / 10 }
    /// Megabits per second.
    var speedMbps: Double { (speed * 8 / 1e6 * 100).rounded() / 100 }
    /// Seconds left at the current speed (nil when idle).
    var etaSeconds: Int? {
        guard status == .downloading, speed > 0 else { return status == .completed ? 0 : nil }
        return Int((Double(bytesTotal - bytesDone) / speed).rounded(.up))
    }
}

/// The sidecar's downloads: a priority queue over the cache engine with a concurrency limit,
/// pause and resume (partial bytes are kept: resuming fetches only what is missing), cancel,
/// and a bandwidth cap per download that can change while it runs.
///
/// Each running download has its own ``CacheEngine`` (its own workers and limiter) over the
/// shared MODELS_ROOT, so pausing one stops exactly its transfers; everything else (locks,
/// partial files, the state database) is shared with the CLI and the mount as usual.
final class DownloadManager: Sendable {
    /// One download: a value in the manager's state, changed only under its lock. A run of it
    /// (a thread) is known by its cancellation token: a run changes the job only while the
    /// job's `cancel` is still its token.
    private struct Job {
        let id: String
        let key: String
        let spec: ModelSpec
        let limiter: BandwidthLimiter
        var status: DownloadStatus = .queued
        var priority: DownloadPriority
        var maxRetries: Int
        var retryCount = 0
        var error: String?
        var bytesDone: Int64 = 0
        var bytesTotal: Int64
        var samples: [(at: Date, bytes: Int64)] = []
        var sequence: Int
        var startedAt = Date()
        /// Set while a thread runs it; cancelling it ends that run.
        var cancel: CancellationToken?
        var engine: CacheEngine?
        var lastEvent = Date.distantPast

        init(spec: ModelSpec, key: String, priority: DownloadPriority, bandwidth: Int64, maxRetries: Int, sequence: Int) {
            id = generatedID("dl")
            self.key = key
            self.spec = spec
            self.priority = priority
            self.maxRetries = maxRetries
            self.sequence = sequence
            limiter = BandwidthLimiter(bytesPerSecond: bandwidth)
            bytesTotal = spec.totalSize
        }

        var speed: Double {
            guard status == .downloading, let first = samples.first, let last = samples.last, last.at > first.at else { return 0 }
            return Double(last.bytes - first.bytes) / last.at.timeIntervalSince(first.at)
        }
    }

    private struct State {
        var jobs: [String: Job] = [:]
        var sequence = 0
        var maxConcurrent: Int
    }

    let engine: CacheEngine
    let events: EventHub
    /// Where pause and cancel wait for a download's engine to stop (it syncs partial files).
    let blocking: NIOThreadPool
    private let state: Mutex<State>

    init(engine: CacheEngine, events: EventHub, blocking: NIOThreadPool) {
        self.engine = engine
        self.events = events
        self.blocking = blocking
        state = Mutex(State(maxConcurrent: max(1, engine.config.maxConcurrentDownloads)))   // 0 only after shutdown()
    }

    /// The key a model's download is filed under: its id, with `#variant` when not the default.
    static func key(_ spec: ModelSpec) -> String {
        ModelResolver.directoryName(modelID: spec.modelID, variant: spec.variant, defaultVariant: spec.defaultVariant)
    }

    /// How many downloads may run at once (`max_concurrent_downloads`); raising it starts queued ones.
    var maxConcurrent: Int {
        get { state.withLock { $0.maxConcurrent } }
        set {
            state.withLock { if $0.maxConcurrent > 0 { $0.maxConcurrent = max(1, newValue) } }
            startQueued()
        }
    }

    // MARK: - Reading

    func snapshot(_ key: String) -> DownloadSnapshot? {
        state.withLock { s in s.jobs[key].map { Self.snapshot($0, queue: Self.queue(s)) } }
    }

    /// Every download this sidecar knows, queued ones in queue order first.
    func all() -> [DownloadSnapshot] {
        state.withLock { s in
            let queue = Self.queue(s)
            let others = s.jobs.values.filter { $0.status != .queued }.sorted { $0.sequence < $1.sequence }
            return (queue.compactMap { s.jobs[$0] } + others).map { Self.snapshot($0, queue: queue) }
        }
    }

    private static func queue(_ s: State) -> [String] {
        s.jobs.values.filter { $0.status == .queued }.sorted { ($0.priority.rank, $0.sequence) < ($1.priority.rank, $1.sequence) }.map(\.key)
    }

    private static func snapshot(_ job: Job, queue: [String]) -> DownloadSnapshot {
        DownloadSnapshot(id: job.id, modelID: job.key, status: job.status, priority: job.priority, bandwidthLimit: job.limiter.bytesPerSecond,
                         bytesDone: job.bytesDone, bytesTotal: job.bytesTotal, speed: job.speed, retryCount: job.retryCount,
                         maxRetries: job.maxRetries, error: job.error, queuePosition: queue.firstIndex(of: job.key).map { $0 + 1 },
                         startedAt: job.startedAt)
    }

    // MARK: - Actions

    /// Queues a download of `spec` (it starts when a slot is free, highest priority first).
    /// - Throws: 409 `CONFLICT` while one is queued, running or paused for the model.
    func start(_ spec: ModelSpec, priority: DownloadPriority, bandwidth: Int64, maxRetries: Int) throws -> DownloadSnapshot {
        let key = Self.key(spec)
        let present = (try? engine.status(spec))?.bytesPresent ?? 0
        try state.withLock { s in
            if let existing = s.jobs[key], existing.status.isActive {
                throw APIError(.conflict, code: "CONFLICT", message: "a download of \(key) is already \(existing.status.rawValue.lowercased())",
                               details: ["download_id": existing.id, "status": existing.status.rawValue])
            }
            s.sequence += 1
            var job = Job(spec: spec, key: key, priority: priority, bandwidth: bandwidth, maxRetries: maxRetries, sequence: s.sequence)
            job.bytesDone = present
            s.jobs[key] = job
        }
        startQueued()
        return try require(key)
    }

    /// Stops the download's transfers and keeps its partial bytes; returns once they stopped.
    func pause(_ key: String) async throws -> DownloadSnapshot {
        try await stop(key, as: .paused, allowedFrom: [.queued, .downloading])
    }

    /// Stops the download for good (partial bytes stay until GC removes them).
    func cancel(_ key: String) async throws -> DownloadSnapshot {
        try await stop(key, as: .cancelled, allowedFrom: [.queued, .downloading, .paused])
    }

    /// Puts a paused (or failed) download back in the queue; it fetches only what is missing.
    func resume(_ key: String) throws -> DownloadSnapshot {
        try state.withLock { s in
            guard var job = s.jobs[key], job.status == .paused || job.status == .failed else {
                throw APIError(.conflict, code: "CONFLICT", message: "\(key) has no paused download to resume",
                               details: ["status": s.jobs[key]?.status.rawValue ?? "NONE"])
            }
            job.status = .queued
            job.error = nil
            s.sequence += 1
            job.sequence = s.sequence
            s.jobs[key] = job
        }
        publishProgress(key, force: true)
        startQueued()
        return try require(key)
    }

    func setPriority(_ key: String, _ priority: DownloadPriority) throws -> DownloadSnapshot {
        try activeJob(key) { $0.priority = priority }
        startQueued()
        return try require(key)
    }

    /// Changes the download's cap (bytes per second, 0 = unlimited), effective at once.
    func setBandwidth(_ key: String, _ bytesPerSecond: Int64) throws -> DownloadSnapshot {
        try activeJob(key) { $0.limiter.setRate(bytesPerSecond) }
        return try require(key)
    }

    private func activeJob(_ key: String, _ change: (inout Job) -> Void) throws {
        try state.withLock { s in
            guard var job = s.jobs[key], job.status.isActive else {
                throw APIError(.conflict, code: "CONFLICT", message: "\(key) has no queued, running or paused download")
            }
            change(&job)
            s.jobs[key] = job
        }
    }

    private func require(_ key: String) throws -> DownloadSnapshot {
        guard let snapshot = snapshot(key) else { throw APIError.notFound("download of \(key)") }
        return snapshot
    }

    private func stop(_ key: String, as final: DownloadStatus, allowedFrom: Set<DownloadStatus>) async throws -> DownloadSnapshot {
        let (running, engine) = try state.withLock { s -> (Bool, CacheEngine?) in
            guard var job = s.jobs[key], allowedFrom.contains(job.status) else {
                throw APIError(.conflict, code: "CONFLICT",
                               message: "\(key) has no download to \(final == .paused ? "pause" : "cancel")",
                               details: ["status": s.jobs[key]?.status.rawValue ?? "NONE"])
            }
            job.status = final
            job.samples = []
            job.cancel?.cancel()
            s.jobs[key] = job
            return (job.cancel != nil, job.engine)
        }
        if let engine {   // outside the lock, on the blocking pool: it syncs partial files
            try await blocking.runIfActive { engine.shutdown(cancellingTransfers: true) }
        }
        // The run ends within one write callback of the cancellation; wait for it (bounded),
        // so that when the answer arrives no byte of this download is moving any more.
        let deadline = ContinuousClock.now + .seconds(10)
        while running, ContinuousClock.now < deadline, state.withLock({ $0.jobs[key]?.cancel != nil }) {
            try await Task.sleep(for: .milliseconds(20))
        }
        publishProgress(key, force: true)
        startQueued()
        return try require(key)
    }

    /// Stops every running download (the sidecar is shutting down): transfers end, partial
    /// bytes are kept, and the next `wan serve` or `ensure` resumes them.
    func shutdown() {
        let engines = state.withLock { s in
            s.maxConcurrent = 0
            var engines: [CacheEngine] = []
            for key in s.jobs.keys where s.jobs[key]?.cancel != nil {
                s.jobs[key]?.status = .paused
                s.jobs[key]?.cancel?.cancel()
                if let engine = s.jobs[key]?.engine { engines.append(engine) }
            }
            return engines
        }
        for engine in engines { engine.shutdown(cancellingTransfers: true) }   // outside the lock: it syncs partial files
    }

    // MARK: - Running

    /// Starts queued downloads, highest priority first, while slots are free.
    private func startQueued() {
        let toStart: [(key: String, spec: ModelSpec, limiter: BandwidthLimiter, token: CancellationToken)] = state.withLock { s in
            let running = s.jobs.values.filter { $0.cancel != nil }.count
            let free = max(0, s.maxConcurrent - running)   // 0 once shut down
            // A job whose previous run is still winding down (paused, then resumed at once)
            // starts when that run ends: its thread calls startQueued last.
            let next = Self.queue(s).filter { s.jobs[$0]?.cancel == nil }.prefix(free)
            return next.compactMap { key in
                guard var job = s.jobs[key] else { return nil }
                let token = CancellationToken()
                job.status = .downloading
                job.cancel = token
                job.samples = []
                job.startedAt = Date()
                s.jobs[key] = job
                return (key, job.spec, job.limiter, token)
            }
        }
        for run in toStart {
            publishProgress(run.key, force: true)
            Thread.detachNewThread { [self] in self.run(run.key, spec: run.spec, limiter: run.limiter, token: run.token) }
        }
    }

    /// One run of a download on its own thread: ensure the model (retrying up to
    /// `max_retries` times, each retry resuming), unless paused or cancelled meanwhile.
    private func run(_ key: String, spec: ModelSpec, limiter: BandwidthLimiter, token: CancellationToken) {
        var outcome: (DownloadStatus, String?) = (.failed, nil)
        var attempt = 0
        while !token.isCancelled {
            do {
                let runEngine = try CacheEngine(config: engine.config, registry: engine.registry, settings: engine.settings, limiter: limiter)
                let stillWanted = withRun(key, token) { job -> Bool in
                    guard !token.isCancelled else { return false }
                    job.engine = runEngine
                    return true
                } ?? false
                guard stillWanted else { break }
                defer {
                    runEngine.shutdown(cancellingTransfers: true)
                    _ = withRun(key, token) { job in if job.engine === runEngine { job.engine = nil } }
                }
                try runEngine.ensure(spec, cancel: token) { [self] done, total in progressed(key, token, done: done, total: total) }
                outcome = (.completed, nil)
                break
            } catch {
                if token.isCancelled { break }
                let message = (error as? any CodedError).map { "\($0.code.rawValue): \($0)" } ?? "\(error)"
                attempt += 1
                let retry = withRun(key, token) { job -> Bool in
                    job.error = message
                    guard attempt <= job.maxRetries else { return false }
                    job.retryCount = attempt
                    return true
                } ?? false
                outcome = (.failed, message)
                guard retry else { break }
                let until = Date().addingTimeInterval(min(30, Double(attempt)))   // a pause cuts the backoff short
                while !token.isCancelled && Date() < until { Thread.sleep(forTimeInterval: 0.1) }
            }
        }
        let finished = withRun(key, token) { job -> Bool in   // never another run's state
            job.cancel = nil
            job.engine = nil
            guard job.status == .downloading else { return false }   // paused or cancelled meanwhile
            job.status = outcome.0
            job.error = outcome.1
            if outcome.0 == .completed { job.bytesDone = job.bytesTotal }
            return true
        } ?? false
        if finished { publishProgress(key, force: true) }
        startQueued()
    }

    /// Changes the job under `key` if `token`'s run is still its current one (nil otherwise).
    private func withRun<T>(_ key: String, _ token: CancellationToken, _ change: (inout Job) -> T) -> T? {
        state.withLock { s in
            guard var job = s.jobs[key], job.cancel === token else { return nil }
            defer { s.jobs[key] = job }
            return change(&job)
        }
    }

    private func progressed(_ key: String, _ token: CancellationToken, done: Int64, total: Int64) {
        let publish = withRun(key, token) { job -> Bool in
            let now = Date()
            job.bytesDone = done
            job.bytesTotal = total
            job.samples.append((now, done))
            job.samples.removeAll { now.timeIntervalSince($0.at) > 5 }
            guard now.timeIntervalSince(job.lastEvent) >= 1 else { return false }
            job.lastEvent = now
            return true
        } ?? false
        if publish { publishProgress(key) }
    }

    // MARK: - Events

    private func publishProgress(_ key: String, force: Bool = false) {
        guard let snapshot = snapshot(key) else { return }
        if force { state.withLock { $0.jobs[key]?.lastEvent = Date() } }
        events.publish(Event.DownloadProgress(modelID: key, progressPercent: snapshot.progressPercent, speedMbps: snapshot.speedMbps,
                                              etaSeconds: Nullable(snapshot.etaSeconds), status: snapshot.status.rawValue,
                                              timestamp: Date()))
    }

}
