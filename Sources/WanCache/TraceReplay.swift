import Foundation
import Synchronization
import WanCore
import WanSources
import WanSystem

/// Replays an ``AccessTrace`` as prefetch: the ranges not in the cache yet are fetched in the
/// trace's order by a few parallel streams, each range through its file's ``FileFetcher``
/// (so bytes are verified as any read's, and a reader waiting on the same bytes shares the
/// fetch), at a priority below what readers ask for, up to a byte budget. Runs on the
/// calling thread and the streams' plain threads (it blocks; never call it from async code).
public enum TraceReplay {
    public struct Options: Sendable {
        /// Ranges fetched at once (each is split into its file's fetch jobs).
        public var streams = 4
        /// The most bytes fetched; nil for the whole trace.
        public var budget: Int64?
        public var priority: FetchPriority = .background
        /// The largest piece one stream asks for at a time (keeps the order fine-grained).
        public var piece: Int64 = 64 << 20
        /// Seconds one piece may take before it counts as failed.
        public var timeout: Double = 600
        public init() {}
    }

    public struct Outcome: Sendable, Codable {
        /// Ranges in the trace (of files the model has with the same content).
        public var ranges = 0
        public var bytesInTrace: Int64 = 0
        /// Bytes of the trace already in the cache when the replay started.
        public var bytesAlreadyPresent: Int64 = 0
        /// Bytes the replay asked for (what was missing, up to the budget).
        public var bytesRequested: Int64 = 0
        /// Bytes of those now in the cache.
        public var bytesFetched: Int64 = 0
        public var budgetReached = false
        /// Files the trace names that the model no longer has with the same content.
        public var skippedFiles: [String] = []
        /// The first failures (a piece that could not be fetched; the replay goes on).
        public var failures: [String] = []
        public var seconds: Double = 0

        enum CodingKeys: String, CodingKey {
            case ranges, seconds, failures
            case bytesInTrace = "bytes_in_trace"
            case bytesAlreadyPresent = "bytes_already_present"
            case bytesRequested = "bytes_requested"
            case bytesFetched = "bytes_fetched"
            case budgetReached = "budget_reached"
            case skippedFiles = "skipped_files"
        }
    }

    struct Piece {
        let file: FileSpec
        let range: Range<Int64>
    }

    /// What to fetch, in order: the missing parts of each range, in pieces, up to the budget.
    static func plan(_ resolved: [(FileSpec, Range<Int64>)], present: (FileSpec) -> RangeSet, options: Options,
                     outcome: inout Outcome) -> [Piece] {
        var known: [String: RangeSet] = [:]
        var pieces: [Piece] = []
        var left = options.budget ?? .max
        for (file, range) in resolved {
            outcome.bytesInTrace = outcome.bytesInTrace.addingClamped(Int64(range.count))
            let here = known[file.sha256] ?? present(file)
            known[file.sha256] = here
            let missing = here.missing(in: range)
            let missingBytes = missing.reduce(Int64(0)) { $0 + Int64($1.count) }
            outcome.bytesAlreadyPresent += Int64(range.count) - missingBytes
            for gap in missing {
                var start = gap.lowerBound
                while start < gap.upperBound {
                    guard left > 0 else {
                        outcome.budgetReached = true
                        return pieces
                    }
                    let end = min(gap.upperBound, start + min(max(1, options.piece), left))
                    pieces.append(Piece(file: file, range: start..<end))
                    left -= end - start
                    outcome.bytesRequested += end - start
                    start = end
                }
            }
        }
        return pieces
    }

    /// Fetches what `trace` names for `spec` that is not here yet. `progress` is called with
    /// the bytes done and the bytes requested, from the streams' threads.
    /// - Throws: when the trace does not fit the model (see ``AccessTrace/resolve(against:)``).
    public static func run(_ trace: AccessTrace, for spec: ModelSpec, engine: CacheEngine, options: Options = Options(),
                           cancel: CancellationToken = .none, progress: (@Sendable (Int64, Int64) -> Void)? = nil) throws -> Outcome {
        let started = Date()
        let resolved = try trace.resolve(against: spec)
        var outcome = Outcome()
        outcome.ranges = resolved.ranges.count
        outcome.skippedFiles = resolved.skipped
        let pieces = plan(resolved.ranges, present: engine.presentRanges, options: options, outcome: &outcome)
        let total = outcome.bytesRequested
        struct Shared {
            var next = 0
            var done: Int64 = 0
            var failures: [String] = []
        }
        let shared = Mutex(Shared())
        let streams = max(1, min(options.streams, 64, pieces.count))
        let finished = DispatchSemaphore(value: 0)
        for index in 0..<(pieces.isEmpty ? 0 : streams) {
            let thread = Thread {
                ThreadName.set("wan-replay-\(index)")
                while !cancel.isCancelled {
                    guard let piece = shared.withLock({ state -> Piece? in
                        guard state.next < pieces.count else { return nil }
                        state.next += 1
                        return pieces[state.next - 1]
                    }) else { break }
                    do {
                        try engine.fetcher(for: piece.file, of: spec).require(piece.range, priority: options.priority,
                                                                              timeout: options.timeout, cancel: cancel)
                        let done = shared.withLock { state in
                            state.done += Int64(piece.range.count)
                            return state.done
                        }
                        progress?(done, total)
                    } catch {
                        shared.withLock { state in
                            if state.failures.count < 10 { state.failures.append("\(piece.file.path) bytes \(piece.range.lowerBound)..<\(piece.range.upperBound): \(error)") }
                        }
                    }
                }
                finished.signal()
            }
            thread.start()
        }
        for _ in 0..<(pieces.isEmpty ? 0 : streams) { finished.wait() }
        let end = shared.withLock { $0 }
        outcome.bytesFetched = end.done
        outcome.failures = end.failures
        outcome.seconds = Date().timeIntervalSince(started)
        return outcome
    }
}
