import Foundation

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

/// A fixed pool of worker threads running blocking fetch jobs (libcurl transfers, pwrite),
/// highest priority first, so demand reads always jump ahead of background work.
///
/// The worker count bounds the number of parallel connections to the sources.
public final class FetchScheduler: @unchecked Sendable {
    private let condition = NSCondition()
    private var queues: [[@Sendable () -> Void]] = Array(repeating: [], count: FetchPriority.allCases.count)
    private var heads = Array(repeating: 0, count: FetchPriority.allCases.count)
    private var running = 0
    private var stopping = false
    public let workers: Int

    public init(workers: Int, name: String = "wan-fetch") {
        self.workers = max(1, workers)
        for index in 0..<self.workers {
            // The threads keep the scheduler alive until stop(). The name is set from inside the
            // thread: on Linux, a name given before start() is not what the thread reports.
            let thread = Thread {
                Thread.current.name = "\(name)-\(index)"
                self.work()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Lets the workers finish what is queued, then exit.
    public func stop() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    /// Queues `job` at `priority`.
    public func submit(_ priority: FetchPriority, _ job: @escaping @Sendable () -> Void) {
        condition.lock()
        queues[priority.rawValue].append(job)
        condition.signal()
        condition.unlock()
    }

    /// Jobs waiting (not running) per priority.
    public var queued: [FetchPriority: Int] {
        condition.lock()
        defer { condition.unlock() }
        var counts: [FetchPriority: Int] = [:]
        for p in FetchPriority.allCases { counts[p] = queues[p.rawValue].count - heads[p.rawValue] }
        return counts
    }

    /// Jobs currently running.
    public var active: Int {
        condition.lock()
        defer { condition.unlock() }
        return running
    }

    private func next() -> (@Sendable () -> Void)? {
        for p in queues.indices where heads[p] < queues[p].count {
            let job = queues[p][heads[p]]
            heads[p] += 1
            if heads[p] > 1024 && heads[p] * 2 > queues[p].count {
                queues[p].removeFirst(heads[p])
                heads[p] = 0
            }
            return job
        }
        return nil
    }

    private func work() {
        while true {
            condition.lock()
            var job = next()
            while job == nil {
                if stopping {
                    condition.unlock()
                    return
                }
                condition.wait()
                job = next()
            }
            running += 1
            condition.unlock()
            job?()
            condition.lock()
            running -= 1
            condition.unlock()
        }
    }
}
