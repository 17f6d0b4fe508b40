import Foundation
import WanSystem

/// The threads that compute whole-file sha256 digests, at a lower CPU priority than the
/// fetch workers and the readers.
///
/// Readers never wait for the whole-file digest in `verify=lazy` (with chunk digests each
/// chunk is verified before it is served; without, bytes are served as they land), so on a
/// busy machine the digest should use the CPU that receiving and serving leave over: on 2
/// cores a cold read through the mount measured 17% of its CPU in libcrypto. The work is the
/// same; it no longer delays the reader. Waiters that do need it (`ensure`, `verify=strict`)
/// get it as soon as the CPU is free.
///
/// `@unchecked Sendable`: its state is guarded by `condition`, a condition variable (which
/// `Mutex` cannot wait on).
public final class HashWorkers: @unchecked Sendable {
    /// A queued digest. A deferrable one (the digest of a file whose every served byte was
    /// verified by its chunk digest) waits while the engine fetches.
    private struct Job {
        let run: @Sendable () -> Void
        let deferrable: Bool
        let queued: ContinuousClock.Instant
    }

    private let condition = NSCondition()
    private var queue: [Job] = []
    /// When the engine was last seen fetching.
    private var lastBusy: ContinuousClock.Instant?
    private var stopping = false
    private var running = 0
    /// Whether the threads were started (on the first job: an engine that never fetches,
    /// such as one made for a status or a size estimate, starts none).
    private var started = false
    private let threads: Int
    private let name: String
    /// The nice value of the workers.
    public static let nice: Int32 = 10

    /// Whether the engine is fetching now (nil: never defer).
    private let busy: (@Sendable () -> Bool)?
    /// The longest a deferrable digest waits for the engine to stop fetching.
    public let maxDeferral: Duration
    /// How long the engine must have stopped fetching before a deferred digest runs: the gaps
    /// between a load's range requests do not count.
    public static let quietPeriod: Duration = .milliseconds(250)

    /// - Parameter threads: default half the cores (at least one): one digest is one thread's
    ///   work, so several files verify in parallel on larger machines.
    /// - Parameter busy: whether the engine is fetching. While it is, deferrable digests wait
    ///   (at most `maxDeferral`) and one that runs pauses: on a machine of few cores the second
    ///   pass over a model's bytes otherwise takes the CPU the load needs (a cold load of 2 GiB
    ///   measured 4.3-4.5 s with the digests beside it, 3.9-4.1 s with them deferred).
    public init(threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount / 2), name: String = "wan-hash",
                busy: (@Sendable () -> Bool)? = nil, maxDeferral: Duration = .seconds(60)) {
        self.threads = max(1, threads)
        self.name = name
        self.busy = busy
        self.maxDeferral = maxDeferral
    }

    /// Whether a deferrable digest that is running should pause: the engine is fetching (a
    /// digest queued `maxDeferral` ago or more runs to its end).
    public func shouldPause(queuedAt queued: ContinuousClock.Instant) -> Bool {
        guard let busy, ContinuousClock.now - queued < maxDeferral else { return false }
        return busy()
    }

    /// Queues `job`; dropped once stopped (a digest that never ran is started again by the
    /// next process that fetches the file).
    /// `deferrable`: may wait while the engine fetches, counted from `queued` (a digest that
    /// paused keeps the time it was first asked for).
    public func submit(deferrable: Bool = false, queued: ContinuousClock.Instant = .now, _ job: @escaping @Sendable () -> Void) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return }
        if !started { startThreads() }
        let deferred = deferrable && busy != nil
        // Asked for by a fetch that just ended: the engine counts as fetching from now.
        if deferred { lastBusy = .now }
        queue.append(Job(run: job, deferrable: deferred, queued: queued))
        condition.broadcast()
    }

    /// Starts the workers now rather than with the first job (a mount, whose first read
    /// should not wait for threads to start).
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        if !started && !stopping { startThreads() }
    }

    /// Whether the workers run (they start with the first job).
    var isStarted: Bool {
        condition.lock()
        defer { condition.unlock() }
        return started
    }

    /// Starts the workers (condition held).
    private func startThreads() {
        started = true
        for index in 0..<threads {
            let thread = Thread { [name] in
                ThreadName.set("\(name)-\(index)")
                try? ThreadPriority.lowerCurrent(to: Self.nice)   // best effort: the work is the same either way
                self.work()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Waits until no digest is queued or running, for at most `timeout` seconds; whether
    /// they all ended. (A mount that stops lets the files it completed reach `.blobs/`.)
    @discardableResult
    public func waitUntilIdle(timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !queue.isEmpty || running > 0 {
            if !condition.wait(until: deadline) { return queue.isEmpty && running == 0 }
        }
        return true
    }

    /// The workers exit once their current job ends; queued jobs are dropped.
    public func stop() {
        condition.lock()
        stopping = true
        queue = []
        condition.broadcast()
        condition.unlock()
    }

    private func work() {
        while true {
            // Asked outside the lock: the engine's scheduler has a lock of its own.
            let fetching = busy?() ?? false
            condition.lock()
            let now = ContinuousClock.now
            if fetching { lastBusy = now }
            let quiet = lastBusy.map { now - $0 >= Self.quietPeriod } ?? true
            guard !stopping else {
                condition.unlock()
                return
            }
            // The first job that need not wait: not deferrable, the engine quiet, or waited enough.
            guard let next = queue.firstIndex(where: { !$0.deferrable || quiet || now - $0.queued >= maxDeferral }) else {
                if queue.isEmpty {
                    condition.wait()
                } else {
                    _ = condition.wait(until: Date().addingTimeInterval(0.05))   // deferred: look again soon
                }
                condition.unlock()
                continue
            }
            let job = queue.remove(at: next).run
            running += 1
            condition.unlock()
            job()
            condition.lock()
            running -= 1
            condition.broadcast()
            condition.unlock()
        }
    }
}
