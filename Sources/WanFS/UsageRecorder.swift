import Foundation
import WanCache

/// Counts what the mount serves (opens, bytes, last access per model) into the state
/// database, in batches every few seconds, and holds a shared model lock while any file of
/// a model is open, so GC never removes a model in use (a lock it cannot take at the open,
/// because a collection holds it that instant, is tried again every second until held). It
/// also keeps the read metrics (cache or origin, latency) and publishes them for the
/// sidecar's `/metrics`, and has the engine let go of blobs removed on disk.
final class UsageRecorder: @unchecked Sendable {
    private let engine: CacheEngine
    private let lock = NSLock()
    private var metrics: MountReadMetrics
    private var opens: [String: Int64] = [:]
    private var bytes: [String: Int64] = [:]
    private var openFiles: [String: Int] = [:]
    private var modelLocks: [String: LockManager.Lock] = [:]
    private var timer: Thread?
    private var stopped = false

    init(engine: CacheEngine, mountpoint: String, flushInterval: Double = 5) {
        self.engine = engine
        metrics = MountReadMetrics(pid: getpid(), mountpoint: mountpoint)
        let ticksPerFlush = max(1, Int(flushInterval.rounded()))
        let thread = Thread { [weak self] in
            var tick = 0
            while true {
                Thread.sleep(forTimeInterval: 1)
                guard let self, !self.isStopped else { return }
                self.takeMissingLocks()
                engine.releaseRemovedBlobs()
                tick += 1
                if tick % ticksPerFlush == 0 { self.flush() }
            }
        }
        thread.name = "wan-usage"
        thread.start()
        timer = thread
    }

    private var isStopped: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopped
    }

    func opened(model: String) {
        lock.lock()
        defer { lock.unlock() }
        opens[model, default: 0] += 1
        openFiles[model, default: 0] += 1
        if modelLocks[model] == nil { takeLock(model) }
    }

    /// Takes `model`'s shared lock if it can now (lock held). A failure leaves it to the next tick.
    private func takeLock(_ model: String) {
        if let held = try? engine.locks.tryAcquire(LockManager.modelLockName(model), mode: .shared) { modelLocks[model] = held }
    }

    /// Models with open files whose lock could not be taken yet: try again.
    private func takeMissingLocks() {
        lock.lock()
        defer { lock.unlock() }
        for model in openFiles.keys where modelLocks[model] == nil { takeLock(model) }
    }

    /// Whether `model` is held in use (for tests).
    func holdsLock(_ model: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return modelLocks[model] != nil
    }

    func closed(model: String) {
        lock.lock()
        defer { lock.unlock() }
        openFiles[model, default: 1] -= 1
        if openFiles[model] == 0 {
            openFiles[model] = nil
            modelLocks.removeValue(forKey: model)?.release()
        }
    }

    func read(model: String, bytes count: Int64) {
        lock.lock()
        bytes[model, default: 0] += count
        lock.unlock()
    }

    /// Counts a read for the metrics: its size, whether it waited for the origin, how long it took.
    func served(bytes count: Int64, fromCache: Bool, seconds: Double) {
        lock.lock()
        metrics.record(bytes: count, fromCache: fromCache, seconds: seconds)
        lock.unlock()
    }

    /// Writes the counts gathered so far, and publishes the read metrics.
    func flush() {
        let inFlight = engine.liveFetchers().filter { $0.snapshot.inFlightBlocks > 0 }.count
        lock.lock()
        let pendingOpens = opens, pendingBytes = bytes
        opens = [:]
        bytes = [:]
        metrics.updated = Date()
        metrics.inFlightFetches = inFlight
        let published = metrics
        lock.unlock()
        if !isStopped { try? published.publish(engine.resolver) }
        guard let state = try? engine.state() else { return }
        for model in Set(pendingOpens.keys).union(pendingBytes.keys) {
            try? state.recordAccess(model: model, uses: pendingOpens[model] ?? 0, opens: pendingOpens[model] ?? 0,
                                    bytesRead: pendingBytes[model] ?? 0)
        }
    }

    func stop() {
        lock.lock()
        stopped = true
        lock.unlock()
        flush()
        MountReadMetrics.remove(pid: getpid(), engine.resolver)
        lock.lock()
        for (_, held) in modelLocks { held.release() }
        modelLocks = [:]
        lock.unlock()
    }
}
