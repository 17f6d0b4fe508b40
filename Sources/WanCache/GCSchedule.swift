import Foundation
import Synchronization
import WanCore
import WanSources
import WanSystem

/// When garbage collection runs, for every long-lived process that keeps MODELS_ROOT in
/// bounds: the mount (`-o cache_max`) and the sidecar (`max_storage_gb` with
/// `cleanup_threshold_percent`, changeable live). One type, so both follow the same rules:
///
/// - a run is due a ``Policy/period`` after the last one, or as soon as what collection can
///   act on (models and blobs; partial downloads are kept) reaches the threshold;
/// - a run collects down to the threshold and past ``Policy/maxModelAge``, pins, models in use
///   and blobs other models share kept (``GarbageCollector``);
/// - what the runs did is counted here, for `/metrics`, the health report and the logs.
///
/// Its methods block (they walk the cache and remove files): call them from a plain thread
/// (``start(every:report:)``) or through a blocking pool.
public final class GCSchedule: Sendable {
    /// What the schedule keeps to; nil from the policy source means collection is off.
    public struct Policy: Sendable, Equatable {
        /// Bytes the cache may hold; nil: no size limit (age only).
        public var limit: Int64?
        /// Collection starts when the cache reaches this share of `limit`, and collects down to it.
        public var thresholdPercent: Double
        /// Models unused for longer (seconds) are removed; nil: no age limit.
        public var maxModelAge: Double?
        /// Seconds between runs when the threshold is not reached.
        public var period: Double

        public init(limit: Int64?, thresholdPercent: Double = 100, maxModelAge: Double? = nil, period: Double = 3600) {
            self.limit = limit
            self.thresholdPercent = thresholdPercent
            self.maxModelAge = maxModelAge
            self.period = period
        }

        /// The bytes a run collects down to.
        var target: Int64? {
            limit.map { Int64((Double($0) * min(max(thresholdPercent, 0), 100) / 100).rounded(.down)) }
        }
    }

    /// What the runs did.
    public struct Record: Sendable {
        public var runs = 0
        public var bytesReclaimed: Int64 = 0
        /// The last run's end (or when the schedule started, before the first run).
        public var lastRun: Date
        /// What the last run left when it could not get under the threshold (pins and models
        /// in use it must keep): the threshold then triggers again only once the cache grows
        /// past this, not at every look.
        public var leftOver: Int64?
        /// Whether a run has happened yet.
        public var hasRun: Bool { runs > 0 }
    }

    public let engine: CacheEngine
    private let policy: @Sendable () -> Policy?
    private let record: Mutex<Record>

    /// - Parameter policy: read before every decision, so a setting changed live applies at
    ///   the next one.
    public init(engine: CacheEngine, startedAt: Date = Date(), policy: @escaping @Sendable () -> Policy?) {
        self.engine = engine
        self.policy = policy
        self.record = Mutex(Record(lastRun: startedAt))
    }

    public var snapshot: Record { record.withLock { $0 } }

    /// Whether a run is due now: the period has passed, or the cache reached the threshold.
    /// Blocking: it may measure the cache.
    public func isDue(now: Date = Date()) -> Bool {
        guard let policy = policy() else { return false }
        if now.timeIntervalSince(snapshot.lastRun) >= policy.period { return true }
        guard let target = policy.target, let used = collectable() else { return false }
        if let leftOver = snapshot.leftOver, used <= leftOver { return false }
        return used >= target
    }

    /// What collection can act on now: models and blobs, not partial downloads (it keeps those).
    private func collectable() -> Int64? {
        guard let usage = try? DiskUsage.measure(engine.resolver) else { return nil }
        return usage.totalBytes - min(max(0, usage.partialBytes), usage.totalBytes)
    }

    /// Runs a collection now (whether due or not) under the current policy, and counts it.
    /// Nil when collection is off. Blocking.
    @discardableResult
    public func run(now: Date = Date()) throws -> GCResult? {
        guard let policy = policy() else { return nil }
        var collector = GarbageCollector(engine: engine)
        collector.maxTotalSize = policy.target   // the live setting, even when it is none
        collector.maxModelAge = policy.maxModelAge
        let result: GCResult
        do {
            result = try collector.collect(dryRun: false, now: now)
        } catch {
            record.withLock {
                $0.runs += 1
                $0.lastRun = Date()
            }
            throw error
        }
        let left = policy.target.flatMap { target in collectable().flatMap { $0 >= target ? $0 : nil } }
        record.withLock {
            $0.runs += 1
            $0.bytesReclaimed = $0.bytesReclaimed.addingClamped(max(0, result.bytesReclaimed))
            $0.lastRun = Date()
            $0.leftOver = left
        }
        return result
    }

    /// Runs a collection if one is due. Blocking.
    public func runIfDue(now: Date = Date()) throws -> GCResult? {
        isDue(now: now) ? try run(now: now) : nil
    }

    /// A plain thread that looks every `tick` seconds (and once at the start) whether a run
    /// is due, and runs it; `report` gets each run's result or error. Stops when the token is
    /// cancelled.
    public func start(every tick: Double, report: @escaping @Sendable (Result<GCResult, any Error>) -> Void) -> CancellationToken {
        let stop = CancellationToken()
        let thread = Thread { [self] in
            ThreadName.set("wan-gc")
            while !stop.isCancelled {
                do {
                    if let result = try runIfDue() { report(.success(result)) }
                } catch {
                    report(.failure(error))
                }
                let deadline = Date().addingTimeInterval(tick)
                while !stop.isCancelled && Date() < deadline { Thread.sleep(forTimeInterval: min(0.25, max(0.01, tick))) }
            }
        }
        thread.start()
        return stop
    }
}
