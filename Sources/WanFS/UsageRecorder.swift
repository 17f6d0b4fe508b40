import Foundation
import Synchronization
import WanCache
import WanSystem

/// Counts what the mount serves (opens, bytes, last access per model) into the state
/// database, in batches every few seconds, and holds a shared model lock while any file of
/// a model is open, so GC never removes a model in use (a lock it cannot take at the open,
/// because a collection holds it that instant, is tried again every second until held). It
/// also keeps the read metrics (cache or origin, latency) and publishes them for the
/// sidecar's `/metrics`, and has the engine let go of blobs removed on disk.
final class UsageRecorder: Sendable {
    private let engine: CacheEngine

    /// The counts and the model locks, changed together under one lock.
    private struct State {
        var metrics: MountReadMetrics
        var opens: [String: Int64] = [:]
        var bytes: [String: Int64] = [:]
        var openFiles: [String: Int] = [:]
        var modelLocks: [String: LockManager.Lock] = [:]
        var stopped = false
    }
    private let state: Mutex<State>

    init(engine: CacheEngine, mountpoint: String, flushInterval: Double = 5) {
        self.engine = engine
        state = Mutex(State(metrics: MountReadMetrics(pid: getpid(), mountpoint: mountpoint)))
        let ticksPerFlush = max(1, Int(flushInterval.rounded()))
        let thread = Thread { [weak self] in
            ThreadName.set("wan-usage")
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
        thread.start()
    }

    private var isStopped: Bool { state.withLock { $0.stopped } }

    func opened(model: String) {
        state.withLock { state in
            state.opens[model, default: 0] += 1
            state.openFiles[model, default: 0] += 1
            if state.modelLocks[model] == nil { takeLock(model, &state) }
        }
    }

    /// Takes `model`'s shared lock if it can now. A failure leaves it to the next tick.
    private func takeLock(_ model: String, _ state: inout State) {
        if let held = try? engine.locks.tryAcquire(LockManager.modelLockName(model), mode: .shared) { state.modelLocks[model] = held }
    }

    /// Models with open files whose lock could not be taken yet: try again.
    private func takeMissingLocks() {
        state.withLock { state in
            for model in state.openFiles.keys where state.modelLocks[model] == nil { takeLock(model, &state) }
        }
    }

    /// Whether `model` is held in use (for tests).
    func holdsLock(_ model: String) -> Bool { state.withLock { $0.modelLocks[model] != nil } }

    func closed(model: String) {
        state.withLock { state in
            state.openFiles[model, default: 1] -= 1
            if state.openFiles[model] == 0 {
                state.openFiles[model] = nil
                state.modelLocks.removeValue(forKey: model)?.release()
            }
        }
    }

    func read(model: String, bytes count: Int64) {
        state.withLock { $0.bytes[model, default: 0] += count }
    }

    /// Counts a read for the metrics: its size, whether it waited for the origin, how long it took.
    func served(bytes count: Int64, fromCache: Bool, seconds: Double) {
        state.withLock { $0.metrics.record(bytes: count, fromCache: fromCache, seconds: seconds) }
    }

    /// The read metrics so far (for a daemon taking this mount over).
    var metrics: MountReadMetrics { state.withLock { $0.metrics } }

    /// Goes on counting from the metrics of the daemon this one took over (a takeover is no
    /// restart for the sidecar's counters). Hostile numbers are dropped.
    func carryOn(_ previous: MountReadMetrics) {
        guard previous.isPlausible else { return }
        state.withLock { state in
            var metrics = previous
            metrics.pid = state.metrics.pid
            metrics.mountpoint = state.metrics.mountpoint
            state.metrics = metrics
        }
    }

    /// Writes the counts gathered so far, and publishes the read metrics.
    func flush() {
        let inFlight = engine.liveFetchers().filter { $0.snapshot.inFlightBlocks > 0 }.count
        let (pendingOpens, pendingBytes, published, stopped) = state.withLock { state in
            let taken = (state.opens, state.bytes)
            state.opens = [:]
            state.bytes = [:]
            state.metrics.updated = Date()
            state.metrics.inFlightFetches = inFlight
            return (taken.0, taken.1, state.metrics, state.stopped)
        }
        if !stopped { try? published.publish(engine.resolver) }
        guard let store = try? engine.state() else { return }
        for model in Set(pendingOpens.keys).union(pendingBytes.keys) {
            try? store.recordAccess(model: model, uses: pendingOpens[model] ?? 0, opens: pendingOpens[model] ?? 0,
                                    bytesRead: pendingBytes[model] ?? 0)
        }
    }

    func stop() {
        state.withLock { $0.stopped = true }
        flush()
        MountReadMetrics.remove(pid: getpid(), engine.resolver)
        let held = state.withLock { state in
            defer { state.modelLocks = [:] }
            return Array(state.modelLocks.values)
        }
        for lock in held { lock.release() }
    }
}
