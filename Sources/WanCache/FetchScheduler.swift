import Foundation
import Synchronization

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

/// A queued job. It runs exactly once, from whichever queue reaches it first, so it can be
/// promoted (re-queued at a higher priority) while it waits.
public final class FetchTicket: Sendable {
    private let claimed = Atomic<Bool>(false)
    private let dropped = Atomic<Bool>(false)
    private let priorityValue: Atomic<Int>
    let work: @Sendable () -> Void

    init(priority: FetchPriority, work: @escaping @Sendable () -> Void) {
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

/// A fixed pool of worker threads running blocking fetch jobs (libcurl transfers, pwrite),
/// highest priority first, so demand reads always jump ahead of readahead and background
/// work. A few workers take only demand jobs: a reader never waits for a free worker
/// behind prefetch.
///
/// The worker count bounds the number of parallel connections to the sources.
public final class FetchScheduler: @unchecked Sendable {
    private let condition = NSCondition()
    private var queues: [[FetchTicket]] = Array(repeating: [], count: FetchPriority.allCases.count)
    private var heads = Array(repeating: 0, count: FetchPriority.allCases.count)
    private var running = 0
    private var stopping = false
    public let workers: Int
    public let demandWorkers: Int

    public init(workers: Int, demandWorkers: Int = 2, name: String = "wan-fetch") {
        self.workers = max(1, workers)
        self.demandWorkers = max(0, demandWorkers)
        for index in 0..<(self.workers + self.demandWorkers) {
            let demandOnly = index >= self.workers
            // The threads keep the scheduler alive until stop(). The name is set from inside the
            // thread: on Linux, a name given before start() is not what the thread reports.
            let thread = Thread {
                Thread.current.name = "\(name)-\(demandOnly ? "d" : "")\(index)"
                self.work(demandOnly: demandOnly)
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

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

    /// Queues `job` at `priority`; the ticket allows promoting it later.
    @discardableResult
    public func submit(_ priority: FetchPriority, _ job: @escaping @Sendable () -> Void) -> FetchTicket {
        let ticket = FetchTicket(priority: priority, work: job)
        condition.lock()
        if stopping {
            condition.unlock()
            ticket.drop()
            return ticket
        }
        queues[priority.rawValue].append(ticket)
        condition.broadcast()
        condition.unlock()
        return ticket
    }

    /// Moves a job that has not started yet to a higher priority.
    public func promote(_ ticket: FetchTicket, to priority: FetchPriority) {
        guard !ticket.isStarted, ticket.lower(to: priority) else { return }
        condition.lock()
        queues[priority.rawValue].append(ticket)   // the old entry is skipped once this one runs
        condition.broadcast()
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

    /// Jobs currently running.
    public var active: Int {
        condition.lock()
        defer { condition.unlock() }
        return running
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

    private func work(demandOnly: Bool) {
        while true {
            condition.lock()
            var ticket = next(demandOnly: demandOnly)
            while ticket == nil {
                if stopping {
                    condition.unlock()
                    return
                }
                condition.wait()
                ticket = next(demandOnly: demandOnly)
            }
            running += 1
            condition.unlock()
            ticket?.work()
            condition.lock()
            running -= 1
            condition.unlock()
        }
    }
}
