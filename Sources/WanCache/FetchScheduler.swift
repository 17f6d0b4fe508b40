import Foundation
import Glibc
import Synchronization
import WanSystem

/// How urgent a fetch is. Lower runs first; within a priority, first come first served.
public enum FetchPriority: Int, Sendable, Comparable, CaseIterable {
    /// A reader is blocked on these bytes right now.
    case demand = 0
    /// Readahead for a reader that streams.
    case readahead = 1
    /// Whole-file hydration (`ensure`, `hydrate=open`, pins).
    case background = 2

    public static func < (lhs: FetchPriority, rhs: FetchPriority) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// A running job's pulse: the job calls ``progressed(bytes:)`` whenever bytes arrive, so the
/// scheduler can tell a job that moves from one that is stuck. A trickle counts as stuck: the
/// job moves each time another ``movingBytes`` have arrived (an origin sending a few bytes a
/// second holds a worker as surely as a frozen one).
public final class FetchProgress: Sendable {
    /// Bytes that make a job count as moving again (over the scheduler's grace period of 2 s:
    /// 8 KiB/s, half the default `min_transfer_rate`).
    public static let movingBytes = 16 << 10
    private let last = Atomic<UInt64>(FetchProgress.now())
    private let pending = Atomic<Int>(0)

    public init() {}

    /// `bytes` arrived just now.
    public func progressed(bytes: Int) {
        let total = pending.add(max(0, bytes), ordering: .relaxed).newValue
        guard total >= Self.movingBytes else { return }
        pending.store(0, ordering: .relaxed)
        last.store(Self.now(), ordering: .relaxed)
    }

    /// Seconds since the job last moved.
    var idleSeconds: Double { Double(Self.now() &- last.load(ordering: .relaxed)) / 1e9 }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) &* 1_000_000_000 &+ UInt64(time.tv_nsec)
    }
}

/// A queued job. It runs exactly once, from whichever queue reaches it first, so it can be
/// promoted (re-queued at a higher priority) while it waits.
public final class FetchTicket: Sendable {
    private let claimed = Atomic<Bool>(false)
    private let dropped = Atomic<Bool>(false)
    private let priorityValue: Atomic<Int>
    let work: @Sendable (FetchProgress) -> Void

    init(priority: FetchPriority, work: @escaping @Sendable (FetchProgress) -> Void) {
        self.priorityValue = Atomic(priority.rawValue)
        self.work = work
    }

    /// Whether a worker has taken it.
    public var isStarted: Bool { claimed.load(ordering: .acquiring) }
    public var priority: FetchPriority { FetchPriority(rawValue: priorityValue.load(ordering: .relaxed)) ?? .background }

    /// Whether it was discarded without running (the scheduler stopped): whoever queued it
    /// must treat its work as never done.
    public var isDropped: Bool { dropped.load(ordering: .acquiring) }

    func claim() -> Bool { claimed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged }

    /// Takes it so that it never runs, and marks it dropped.
    func drop() {
        if claim() { dropped.store(true, ordering: .releasing) }
    }
    func lower(to priority: FetchPriority) -> Bool {
        let current = priorityValue.load(ordering: .relaxed)
        guard priority.rawValue < current else { return false }
        priorityValue.store(priority.rawValue, ordering: .relaxed)
        return true
    }
}

/// A pool of worker threads running blocking fetch jobs (libcurl transfers, pwrite),
/// highest priority first, so demand reads always jump ahead of readahead and background
/// work. A few workers take only demand jobs: a reader never waits for a free worker
/// behind prefetch.
///
/// The worker count bounds the parallel connections to the sources. A job that has received
/// nothing for ``stallGrace`` seconds (a frozen or trickling origin) does not count: while
/// jobs wait in the queue and that many workers are stuck, extra workers are started (up to
/// ``maxThreads``), so one slow origin cannot hold up the files of the others. Extra workers
/// leave once the stuck jobs end or the queue is empty.
///
/// `@unchecked Sendable`: its queues and counts are guarded by `condition`, a condition
/// variable (which `Mutex` cannot wait on).
public final class FetchScheduler: @unchecked Sendable {
    private let condition = NSCondition()
    private var queues: [[FetchTicket]] = Array(repeating: [], count: FetchPriority.allCases.count)
    private var heads = Array(repeating: 0, count: FetchPriority.allCases.count)
    private var running: [ObjectIdentifier: FetchProgress] = [:]
    private var threads = 0
    /// Workers that take any job (not demand-only) and are waiting for one: while one is,
    /// a queued job is about to run and needs no extra worker.
    private var idleGeneral = 0
    /// Whether the workers were started (on the first job: an engine that never fetches
    /// starts no thread).
    private var started = false
    private var stopping = false
    public let workers: Int
    public let demandWorkers: Int
    /// Seconds without a byte after which a running job no longer counts against `workers`.
    public let stallGrace: Double
    /// The most worker threads there ever are, stuck ones included.
    public let maxThreads: Int
    private let name: String

    public init(workers: Int, demandWorkers: Int = 2, name: String = "wan-fetch", stallGrace: Double = 2) {
        self.workers = max(1, workers)
        self.demandWorkers = max(0, demandWorkers)
        self.stallGrace = stallGrace
        self.maxThreads = min(256, 4 * (self.workers + self.demandWorkers))
        self.name = name
    }

    /// Starts the workers and the monitor (condition held).
    private func startWorkers() {
        started = true
        for index in 0..<(workers + demandWorkers) {
            startThread(index: index, demandOnly: index >= workers, extra: false)
        }
        let monitor = Thread { [weak self, name] in
            ThreadName.set("\(name)-watch")
            while let self, self.watch() {}
        }
        monitor.start()
    }

    /// Starts a worker (condition held). The threads keep the scheduler alive until stop().
    /// The name is set from inside the thread, for the kernel (``ThreadName``).
    private func startThread(index: Int, demandOnly: Bool, extra: Bool) {
        threads += 1
        let label = "\(name)-\(extra ? "x" : demandOnly ? "d" : "")\(index)"
        let thread = Thread {
            ThreadName.set(label)
            self.work(demandOnly: demandOnly, extra: extra)
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// One look at the running jobs (every quarter second): starts an extra worker when jobs
    /// wait while stuck ones hold the workers (none is idle: a worker woken for a job that has
    /// not yet taken it is still idle). False once stopped.
    private func watch() -> Bool {
        // Not a wait on the condition: a queued job's wake-up must go to a worker.
        Thread.sleep(forTimeInterval: 0.25)
        condition.lock()
        defer { condition.unlock() }
        if stopping { return false }
        if queuedJobs && idleGeneral == 0 && moving < workers && threads < maxThreads {
            startThread(index: threads, demandOnly: false, extra: true)
        }
        return true
    }

    /// Whether the queues hold an entry (condition held): a job, or the old entry of one that
    /// was promoted or has started, which a worker skips.
    private var queuedJobs: Bool { queues.indices.contains { heads[$0] < queues[$0].count } }

    /// Running jobs that received bytes within the grace period (condition held).
    private var moving: Int { running.values.filter { $0.idleSeconds < stallGrace }.count }

    /// Lets the workers finish what is queued (or, with `discardingQueued`, only what is
    /// running: the rest is dropped), then exit. Jobs submitted afterwards are dropped.
    public func stop(discardingQueued: Bool = false) {
        condition.lock()
        if discardingQueued {
            for p in queues.indices {
                for ticket in queues[p][heads[p]...] { ticket.drop() }
                queues[p] = []   // the dropped jobs' closures go (they reference their fetchers)
                heads[p] = 0
            }
        }
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Starts the workers now rather than with the first job (a mount, whose first read
    /// should not wait for threads to start).
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        if !started && !stopping { startWorkers() }
    }

    /// Queues `job` at `priority`; the ticket allows promoting it later. The job is given its
    /// pulse to report progress on.
    @discardableResult
    public func submit(_ priority: FetchPriority, _ job: @escaping @Sendable (FetchProgress) -> Void) -> FetchTicket {
        let ticket = FetchTicket(priority: priority, work: job)
        condition.lock()
        if stopping {
            condition.unlock()
            ticket.drop()
            return ticket
        }
        if !started { startWorkers() }
        queues[priority.rawValue].append(ticket)
        condition.signal()
        condition.unlock()
        return ticket
    }

    /// Moves a job that has not started yet to a higher priority.
    public func promote(_ ticket: FetchTicket, to priority: FetchPriority) {
        guard !ticket.isStarted, ticket.lower(to: priority) else { return }
        condition.lock()
        queues[priority.rawValue].append(ticket)   // the old entry is skipped once this one runs
        condition.signal()
        condition.unlock()
    }

    /// Jobs waiting (not running) per priority.
    public var queued: [FetchPriority: Int] {
        condition.lock()
        defer { condition.unlock() }
        var counts: [FetchPriority: Int] = [:]
        for p in FetchPriority.allCases {
            counts[p] = queues[p.rawValue][heads[p.rawValue]...].filter { !$0.isStarted && $0.priority == p }.count
        }
        return counts
    }

    /// Whether a running job received bytes within the grace period (stuck ones, which use
    /// no CPU, do not count).
    public var isMoving: Bool {
        condition.lock()
        defer { condition.unlock() }
        return moving > 0
    }

    /// Jobs currently running.
    public var active: Int {
        condition.lock()
        defer { condition.unlock() }
        return running.count
    }

    /// Worker threads now (extra ones included).
    public var threadCount: Int {
        condition.lock()
        defer { condition.unlock() }
        return threads
    }

    private func next(demandOnly: Bool) -> FetchTicket? {
        for p in queues.indices where !demandOnly || p == FetchPriority.demand.rawValue {
            while heads[p] < queues[p].count {
                let ticket = queues[p][heads[p]]
                heads[p] += 1
                if heads[p] > 1024 && heads[p] * 2 > queues[p].count {
                    queues[p].removeFirst(heads[p])
                    heads[p] = 0
                }
                if ticket.claim() { return ticket }
            }
        }
        return nil
    }

    private func work(demandOnly: Bool, extra: Bool) {
        condition.lock()
        defer {
            threads -= 1
            condition.unlock()
        }
        while true {
            // An extra worker stays only while stuck jobs hold the regular ones.
            if extra && (moving >= workers || stopping) { return }
            guard let ticket = next(demandOnly: demandOnly) else {
                if stopping || extra { return }
                // A job's wake-up goes to one waiting worker (waking them all cost the first
                // byte of a cold file about a millisecond on two cores): one that takes only
                // demand jobs passes a wake-up for other work on to a worker that takes it.
                if demandOnly && idleGeneral > 0 && queuedJobs { condition.signal() }
                if !demandOnly { idleGeneral += 1 }
                condition.wait()
                if !demandOnly { idleGeneral -= 1 }
                continue
            }
            let progress = FetchProgress()
            let key = ObjectIdentifier(progress)
            running[key] = progress
            condition.unlock()
            ticket.work(progress)
            condition.lock()
            running[key] = nil
        }
    }
}
