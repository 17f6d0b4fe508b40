import Foundation

/// Which blocks of one file are present, being fetched, or failed: the fetcher's bookkeeping,
/// pure (no I/O, no locks, no clock of its own), so each rule is tested on its own.
///
/// A block is the manifest's chunk when the file has chunk digests (then a block is present
/// only once it matched its digest), else a fixed fetch granularity. Bytes may land in pieces
/// smaller than a block (without digests), so presence is kept as byte ranges.
///
/// - present: servable bytes (verified chunks, or landed bytes without digests).
/// - in flight: claimed by a queued or running job.
/// - failed: the last fetch failed. A waiter that started before the failure reports it; a
///   later read retries. A chunk that was corrupt at every source cools down first: until
///   `retryAfter` every read of it fails at once, then the next read tries every source again.
/// - unchecked: chunks a range map written by another (or an earlier) process claims, not yet
///   hashed by this one; they are checked before they are first served.
/// - rejected: recorded chunks found bad here; not taken from a map again until fetched here.
struct BlockLedger: Sendable {
    struct Failure: Sendable {
        let error: any Error
        let at: Date
        /// Set for chunks corrupt at every source: no retry before this.
        let retryAfter: Date?
    }

    let size: Int64
    let blockSize: Int64
    let chunked: Bool
    /// Blocks per job (one range request).
    let jobBlocks: Int

    private(set) var present = RangeSet()
    private(set) var inFlight = Set<Int>()
    private(set) var failures: [Int: Failure] = [:]
    private(set) var unchecked = Set<Int>()
    private(set) var rejected = Set<Int>()
    /// Every present byte was fetched (and, with chunks, verified) by this process; false once
    /// anything was learned from a range map.
    private(set) var fetchedHere = true

    init(size: Int64, blockSize: Int64, chunked: Bool, jobBlocks: Int) {
        self.size = max(0, size)
        self.blockSize = max(1, blockSize)
        self.chunked = chunked
        self.jobBlocks = max(1, jobBlocks)
    }

    var blockCount: Int { Int(size / blockSize) + (size % blockSize == 0 ? 0 : 1) }
    var isComplete: Bool { present.count == size }
    var bytesPresent: Int64 { present.count }

    /// The blocks that overlap `range` (clamped to the file).
    func blocks(in range: Range<Int64>) -> Range<Int> {
        let lower = max(0, range.lowerBound), upper = min(size, range.upperBound)
        guard lower < upper else { return 0..<0 }
        let last = (upper - 1) / blockSize
        return Int(lower / blockSize)..<(Int(last) + 1)
    }

    /// The bytes of `block`.
    func blockRange(_ block: Int) -> Range<Int64> {
        let start = Int64(block) * blockSize
        return start..<min(start + min(blockSize, size - start), size)
    }

    func contains(_ range: Range<Int64>) -> Bool { present.contains(range) }

    // MARK: - Claiming work

    /// Claims the blocks of `range` that need a fetch (neither present, nor in flight, nor
    /// failed since `since`, nor cooling down) and returns them as runs of consecutive blocks,
    /// at most `jobBlocks` long: one job each. The blocks are in flight from now on.
    mutating func claim(_ range: Range<Int64>, now: Date, skippingFailuresSince since: Date?) -> [[Int]] {
        var runs: [[Int]] = []
        var run: [Int] = []
        for block in blocks(in: range) {
            if inFlight.contains(block) || present.contains(blockRange(block)) || isBlocked(block, now: now, since: since) {
                if !run.isEmpty { runs.append(run); run = [] }
                continue
            }
            inFlight.insert(block)
            run.append(block)
            if run.count == jobBlocks { runs.append(run); run = [] }
        }
        if !run.isEmpty { runs.append(run) }
        return runs
    }

    private func isBlocked(_ block: Int, now: Date, since: Date?) -> Bool {
        guard let failure = failures[block] else { return false }
        if let retryAfter = failure.retryAfter, retryAfter > now { return true }
        if let since, failure.at >= since { return true }
        return false
    }

    /// Blocks of `range` in flight (their jobs may be promoted).
    func inFlightBlocks(in range: Range<Int64>) -> [Int] { blocks(in: range).filter { inFlight.contains($0) } }

    /// Jobs that will never run (the scheduler dropped them): their blocks are free again.
    mutating func release(_ blocks: [Int]) {
        for block in blocks { inFlight.remove(block) }
    }

    // MARK: - Results

    /// Bytes of `range` landed (and, with chunks, matched their digest). Whether any were new.
    @discardableResult
    mutating func landed(_ range: Range<Int64>) -> Bool {
        guard !range.isEmpty, !present.contains(range) else { return false }
        present.insert(range)
        if chunked {
            for block in blocks(in: range) {
                rejected.remove(block)
                unchecked.remove(block)
            }
        }
        return true
    }

    /// A job delivered all of its blocks.
    mutating func jobSucceeded(_ blocks: [Int]) {
        for block in blocks {
            inFlight.remove(block)
            failures[block] = nil
        }
    }

    /// A job failed with `error`. Blocks it did deliver stay present. `corruptEverywhere` are
    /// the chunks no source had good bytes for: they cool down for `coolDown` seconds. When
    /// the job died on such a chunk, its other blocks did nothing wrong: they are freed for the
    /// next read instead of failing it.
    mutating func jobFailed(_ blocks: [Int], error: any Error, now: Date, corruptEverywhere: Set<Int>, coolDown: Double) {
        for block in blocks {
            inFlight.remove(block)
            guard !present.contains(blockRange(block)) else { continue }
            if corruptEverywhere.contains(block) {
                failures[block] = Failure(error: error, at: now, retryAfter: now.addingTimeInterval(coolDown))
            } else if corruptEverywhere.isEmpty {
                failures[block] = Failure(error: error, at: now, retryAfter: nil)
            }
        }
    }

    /// The failure a waiter for `range` (waiting since `since`) must report: a block of it that
    /// failed after the wait began, or one cooling down after corrupt bytes at every source.
    func failure(in range: Range<Int64>, since: Date, now: Date) -> (any Error)? {
        for block in blocks(in: range) where !inFlight.contains(block) {
            guard let failure = failures[block], !present.contains(blockRange(block)) else { continue }
            if failure.at >= since { return failure.error }
            if let retryAfter = failure.retryAfter, retryAfter > now { return failure.error }
        }
        return nil
    }

    /// Chunks cooling down now (for status: which chunk is CORRUPT).
    func coolingDown(now: Date) -> [Int] {
        failures.filter { ($0.value.retryAfter ?? .distantPast) > now }.map(\.key).sorted()
    }

    // MARK: - What other processes recorded

    /// Takes in the ranges a range map claims: present from now on; with chunks, to be checked
    /// before they are served. Returns the ranges that were new.
    @discardableResult
    mutating func learn(_ recorded: RangeSet) -> [Range<Int64>] {
        var added: [Range<Int64>] = []
        for range in recorded.ranges {
            for gap in present.missing(in: range) {
                if chunked {
                    // A chunk counts only when the map claims all of it, and one found bad here does not come back.
                    for block in blocks(in: gap) where !rejected.contains(block) && recorded.contains(blockRange(block))
                        && !present.contains(blockRange(block)) {
                        unchecked.insert(block)
                        present.insert(blockRange(block))
                        added.append(blockRange(block))
                    }
                } else {
                    present.insert(gap)
                    added.append(gap)
                }
            }
        }
        if !added.isEmpty { fetchedHere = false }
        return added
    }

    /// Learned chunks of `range` not yet checked here.
    func uncheckedBlocks(in range: Range<Int64>) -> [Int] { blocks(in: range).filter { unchecked.contains($0) } }

    /// The result of hashing a learned chunk: kept, or dropped and rejected (fetched again).
    mutating func checked(_ block: Int, good: Bool) {
        guard unchecked.remove(block) != nil else { return }
        if !good {
            rejected.insert(block)
            present.remove(blockRange(block))
        }
    }

    /// Everything is forgotten: the partial file it described is gone or was found bad.
    mutating func reset() {
        self = BlockLedger(size: size, blockSize: blockSize, chunked: chunked, jobBlocks: jobBlocks)
    }

    /// The file is complete (committed or adopted as a blob).
    mutating func markComplete() {
        present = RangeSet(size > 0 ? [0..<size] : [])
        inFlight = []
        failures = [:]
        unchecked = []
        rejected = []
    }
}
