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
    private let condition = NSCondition()
    private var queue: [@Sendable () -> Void] = []
    private var stopping = false
    private var running = 0
    /// Whether the threads were started (on the first job: an engine that never fetches,
    /// such as one made for a status or a size estimate, starts none).
    private var started = false
    private let threads: Int
    private let name: String
    /// The nice value of the workers.
    public static let nice: Int32 = 10

    /// - Parameter threads: default half the cores (at least one): one digest is one thread's
    ///   work, so several files verify in parallel on larger machines.
    public init(threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount / 2), name: String = "wan-hash") {
        self.threads = max(1, threads)
        self.name = name
    }

    /// Queues `job`; dropped once stopped (a digest that never ran is started again by the
    /// next process that fetches the file).
    public func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return }
        if !started { startThreads() }
        queue.append(job)
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
            condition.lock()
            while queue.isEmpty && !stopping { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            let job = queue.removeFirst()
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
