import Foundation
import Synchronization
import WanSystem

/// How fast each source delivers, so one file's range requests can
/// be spread over its sources (striping) and a request that runs far past its source's usual
/// time can be moved to another (hedging).
///
/// - **Striping**: reads are shared out in proportion to each source's measured rate (weighted
///   fair sharing, see ``ranked(_:bytes:)``): equal sources get the same bytes, a source twice
///   as fast about twice as many. Rates are an average of recent reads of at least 256 KiB.
/// - **Hedging**: a read still running after `hedgeFactor` × the p95 of its source's recent
///   time per MiB (of every source's before its own are known, of ``hedgePrior`` before any
///   is), and at least `minimumHedge` seconds, is cancelled so the reader continues on the next
///   source from the last byte it verified (at most a chunk is fetched again); the slow
///   source's rate is halved, so it gets less work.
public final class SourceRates: Sendable {
    public static let shared = SourceRates()

    /// One transfer in flight (see ``begin(_:bytes:parent:canHedge:)``).
    public final class Attempt: Sendable {
        public let source: String
        public let bytes: Int64
        /// What the transfer must use: cancelled with the caller's token, or by a hedge.
        public let token: CancellationToken
        let started = ContinuousClock.now
        let hedgedFlag = Atomic<Bool>(false)
        /// Whether this attempt was cancelled because it ran too long (not by its caller).
        public var hedged: Bool { hedgedFlag.load(ordering: .acquiring) }

        init(source: String, bytes: Int64, parent: CancellationToken) {
            self.source = source
            self.bytes = bytes
            self.token = CancellationToken(parent: parent)
        }
    }

    struct Source {
        /// Bytes per second (average of recent reads).
        var rate: Double?
        /// Recent seconds per MiB, newest last.
        var samples: [Double] = []
        /// Its virtual clock, for fair sharing (see ``ranked(_:bytes:)``).
        var clock: Double?
    }

    struct State {
        var sources: [String: Source] = [:]
        /// Attempts that may be hedged (their deadlines follow the p95 as it is measured).
        var watched: [ObjectIdentifier: Attempt] = [:]
        var watching = false
    }

    private let state = Mutex(State())
    let hedgeFactor: Double
    let minimumHedge: Double
    static let minimumSample: Int64 = 256 << 10
    static let window = 32
    static let minimumSamples = 4

    public init(hedgeFactor: Double = 3, minimumHedge: Double = 1) {
        self.hedgeFactor = hedgeFactor
        self.minimumHedge = minimumHedge
    }

    /// The indices of `names` (in priority order) in the order a read of `bytes` should try
    /// them, and the first is charged for it. Weighted fair sharing: each source has a virtual
    /// clock that advances by (bytes given to it) / (its rate); the read goes to the source that
    /// would finish it first on its clock, so each source gets bytes in proportion to its rate,
    /// whether reads run one at a time or many at once. A source not measured yet counts as fast
    /// as the best (so it is tried); an idle one catches up from the others' clock (no credit for
    /// idling past ``credit``); ties keep the priority order.
    public func ranked(_ names: [String], bytes: Int64) -> [Int] {
        state.withLock { state in
            let assumed = names.compactMap { state.sources[$0]?.rate }.max() ?? Self.assumedRate
            // No more than `credit` seconds of catching up for a source that sat idle.
            let latest = names.compactMap { state.sources[$0]?.clock }.max() ?? 0
            let cost = Double(max(1, bytes))
            let finish = names.map { name -> Double in
                let source = state.sources[name]
                return max(source?.clock ?? latest, latest - Self.credit) + cost / (source?.rate ?? assumed)
            }
            let order = names.indices.sorted { (finish[$0], $0) < (finish[$1], $1) }
            // Every source is on the clock from its first look; the chosen one is charged.
            for (index, name) in names.enumerated() where state.sources[name]?.clock == nil {
                state.sources[name, default: Source()].clock = finish[index] - cost / (state.sources[name]?.rate ?? assumed)
            }
            if let first = order.first { state.sources[names[first], default: Source()].clock = finish[first] }
            return order
        }
    }

    /// The rate of a source before any is measured (bytes per second), for sharing.
    static let assumedRate = 100e6
    /// The slowest a transfer is expected to be before any is measured (bytes per second), for
    /// hedging: 16 MiB then take 1.7 s, and are hedged after 5 s.
    static let hedgePrior = 10e6
    /// The most virtual seconds an idle source may be behind the others.
    static let credit = 0.5

    /// A transfer of `bytes` from `source` starts. With `canHedge` (another source could take
    /// over), it is cancelled if it runs past its hedge deadline.
    public func begin(_ source: String, bytes: Int64, parent: CancellationToken, canHedge: Bool) -> Attempt {
        let attempt = Attempt(source: source, bytes: bytes, parent: parent)
        let startWatcher = state.withLock { state -> Bool in
            guard canHedge else { return false }
            state.watched[ObjectIdentifier(attempt)] = attempt
            defer { state.watching = true }
            return !state.watching
        }
        if startWatcher { startWatching() }
        return attempt
    }

    /// The transfer ended; a completed one of at least 256 KiB is a rate sample.
    public func end(_ attempt: Attempt, delivered: Bool) {
        let elapsed = ContinuousClock.now - attempt.started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        state.withLock { state in
            state.watched[ObjectIdentifier(attempt)] = nil
            var source = state.sources[attempt.source, default: Source()]
            if attempt.hedged {
                // It did not finish: at best it ran at the rate of finishing now. Halved, so it
                // gets less work (and a source never measured gets a rate at all).
                let bound = Double(attempt.bytes) / max(seconds, 0.001)
                source.rate = min(source.rate ?? bound, bound) / 2
            } else if delivered, attempt.bytes >= Self.minimumSample, seconds > 0 {
                let rate = Double(attempt.bytes) / seconds
                source.rate = source.rate.map { 0.7 * $0 + 0.3 * rate } ?? rate
                source.samples.append(seconds / (Double(attempt.bytes) / Double(1 << 20)))
                if source.samples.count > Self.window { source.samples.removeFirst(source.samples.count - Self.window) }
            }
            state.sources[attempt.source] = source
        }
    }

    /// The rate measured for `source` (bytes per second), nil before its first sample.
    public func rate(_ source: String) -> Double? { state.withLock { $0.sources[source]?.rate } }

    /// The p95 of recent seconds per MiB: the source's own, else every source's, else what
    /// ``hedgePrior`` would take (a first read that freezes is hedged too, later).
    private func p95(_ source: String, _ state: State) -> Double {
        var samples = state.sources[source]?.samples ?? []
        if samples.count < Self.minimumSamples { samples = state.sources.values.flatMap(\.samples) }
        guard samples.count >= Self.minimumSamples else { return Double(1 << 20) / Self.hedgePrior }
        let sorted = samples.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count) * 0.95).rounded(.up)) - 1)]
    }

    /// Cancels watched attempts past their deadline, every 50 ms, while there are any.
    private func startWatching() {
        let thread = Thread { [self] in
            ThreadName.set("wan-hedge")
            while true {
                Thread.sleep(forTimeInterval: 0.05)
                let now = ContinuousClock.now
                let late = state.withLock { state -> [Attempt]? in
                    if state.watched.isEmpty {
                        state.watching = false
                        return nil
                    }
                    let late = state.watched.values.filter { attempt in
                        let perMiB = p95(attempt.source, state)
                        let seconds = max(minimumHedge, hedgeFactor * perMiB * max(1, Double(attempt.bytes) / Double(1 << 20)))
                        return now - attempt.started >= .milliseconds(Int64(min(seconds, 86400) * 1000))
                    }
                    for attempt in late { state.watched[ObjectIdentifier(attempt)] = nil }
                    return late
                }
                guard let late else { return }
                for attempt in late where !attempt.token.isCancelled {
                    attempt.hedgedFlag.store(true, ordering: .releasing)
                    attempt.token.cancel()
                }
            }
        }
        thread.start()
    }
}
