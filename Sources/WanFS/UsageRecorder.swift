import Foundation
import WanCache

/// Counts what the mount serves (opens, bytes, last access per model) into the state
/// database, in batches every few seconds, and holds a shared model lock while any file of
/// a model is open, so GC never removes a model in use.
final class UsageRecorder: @unchecked Sendable {
    private let engine: CacheEngine
    private let lock = NSLock()
    private var opens: [String: Int64] = [:]
    private var bytes: [String: Int64] = [:]
    private var openFiles: [String: Int] = [:]
    private var modelLocks: [String: LockManager.Lock] = [:]
    private var timer: Thread?
    private var stopped = false

    init(engine: CacheEngine, flushInterval: Double = 5) {
        self.engine = engine
        let thread = Thread { [weak self] in
            while true {
                Thread.sleep(forTimeInterval: flushInterval)
                guard let self, !self.isStopped else { return }
                self.flush()
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
        if openFiles[model] == 1, modelLocks[model] == nil {
            modelLocks[model] = try? engine.locks.tryAcquire(LockManager.modelLockName(model), mode: .shared)
        }
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

    /// Writes the counts gathered so far.
    func flush() {
        lock.lock()
        let pendingOpens = opens, pendingBytes = bytes
        opens = [:]
        bytes = [:]
        lock.unlock()
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
        lock.lock()
        for (_, held) in modelLocks { held.release() }
        modelLocks = [:]
        lock.unlock()
    }
}
