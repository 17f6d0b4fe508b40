import Foundation
import WanCore
import WanSources
import WanSystem

/// How reads of a file without chunk digests are verified (the mount's `verify=` option).
public enum VerifyMode: String, Sendable, CaseIterable {
    /// Serve bytes as they land; verify the whole file when it is complete.
    case lazy
    /// Serve nothing until the whole file has verified.
    case strict
}

/// Fetches one file's content (one sha256 and size) into the cache and tells readers when the
/// bytes they need are there. One instance per content per process: every reader, the
/// mount's readahead and `ensure` share it, so each byte is fetched once.
///
/// It coordinates four parts, each holding one set of rules:
/// - ``BlockLedger``: which blocks are present, in flight, failed or cooling down (pure);
/// - ``PartialFile``: the sparse `.tmp/<sha256>.part`, its range map and sync policy, and
///   whether it is still the file at its path;
/// - ``WholeFileDigest`` and ``BlobStore``: the whole-file sha256, computed as bytes arrive,
///   and the only code that gives a blob its name;
/// - fetch ownership: one process at a time owns the fetch of a content (an exclusive file
///   lock); others follow its progress through the range map until they can take over.
///
/// Missing blocks are fetched by jobs on the shared ``FetchScheduler`` (runs of blocks, one
/// range request each). With chunk digests a block is served only once it matched its digest
/// (bad bytes fail over to the next source; a chunk bad at every source fails only the reads
/// that touch it, and is tried again after a cool-down). Without, bytes are served as they
/// land (`verify=lazy`) or once the whole file verified (`verify=strict`). A whole-file
/// mismatch quarantines the partial file and fetches again from the sources that did not
/// serve it.
///
/// Whatever runs beside it (GC, `ensure --force`, `verify --fix`, another mount, kill -9), a
/// reader gets the bytes of the file it was served from, or an error: what the fetcher
/// remembers about a partial file or a blob is dropped as soon as that file is no longer the
/// one at its path.
public final class FileFetcher: Sendable {
    public enum Phase: String, Sendable {
        case partial, verifying, complete, corrupt
    }

    /// What a reader can be told about the file right now.
    public struct Snapshot: Sendable {
        public let phase: Phase
        public let bytesPresent: Int64
        public let size: Int64
        public let inFlightBlocks: Int
        public let generation: Int
        public let lastSource: String?
        public let error: String?
        /// Every byte present was fetched (and checked, with chunk digests) by this process:
        /// nothing came from a range map written by another or an earlier one.
        public let fetchedHere: Bool
        /// Chunks that were corrupt at every source and are cooling down.
        public let corruptChunks: [Int]
        /// Bytes of the whole-file digest read back from the partial file (not hashed in passing).
        public let digestReadBack: Int64
        /// Times the whole-file digest started over (bytes it had hashed may have changed).
        public let digestRestarts: Int
    }

    /// The content: size, sha256, chunk digests. `path` is where the sources have it.
    public let content: FileSpec
    /// The model (directory name) that asked first, for the download history.
    public let model: String
    public let blockSize: Int64
    let reader: FailoverReader
    let settings: CacheEngine.Settings
    let root: CacheRoot
    let store: BlobStore
    let locks: LockManager
    let state: StateStore?
    let scheduler: FetchScheduler
    /// Where the whole-file digest catches up (lower CPU priority than fetching and serving).
    let hashWorkers: HashWorkers
    /// Ends every transfer of this fetcher when cancelled (the engine's shutdown).
    let cancel: CancellationToken
    /// Called with the blob's path once the content is committed (the engine links it into the model).
    let onCommit: (@Sendable (String) -> Void)?
    /// Called (with the content's sha256) when bytes that may have been served are discarded
    /// (a whole-file mismatch): caches above, such as the kernel's, must drop them.
    let onDiscard: (@Sendable (String) -> Void)?
    let policy: PartialFile.Policy
    /// Serializes the fetch jobs' writes into the partial file. ext4 holds the inode lock
    /// through every buffered write anyway; eight jobs contending for it in the kernel spun
    /// (rwsem_spin_on_owner was 4-5% of a cold read's CPU), waiting here sleeps.
    private let writeLock = WriteLock()

    var blobPath: String { root.resolver.blobPath(sha256: content.sha256) }

    /// Everything that changes together, behind one lock.
    struct State {
        var ledger: BlockLedger
        var phase: Phase = .partial
        /// Bumped whenever what is remembered about the partial file is dropped; jobs of an
        /// older generation change nothing.
        var generation = 0
        /// The queued job of each in-flight block, so a demand read can promote it.
        var tickets: [Int: FetchTicket] = [:]
        var waiters = 0
        /// Held while this process owns the fetch.
        var ownership: LockManager.Lock?
        /// The partial file (writable while owning, else the owner's, read-only).
        var partial: PartialFile?
        var digest: WholeFileDigest
        /// The verified blob, once complete.
        var blob: Blob?
        /// No source had good bytes for the whole file: every wait fails until `until`.
        var corrupt: (error: any CodedError, until: Date)?
        /// Sources that served bad bytes, not asked again until the date.
        var excluded: [String: Date] = [:]
        /// Chunks that failed their digest in the running jobs, and who sent them.
        var badChunks: [Int: Set<String>] = [:]
        var servedBy = Set<String>()
        var lastSource: String?
        var hashQueued = false
        /// Whether the digest queued may wait while the engine fetches.
        var hashQueuedDeferrable = false
        var hashing = false
        var hashPending = false
        var hashPendingDeferrable = false
        /// A local failure (opening, syncing, committing) waiters that began before it report.
        var localFailure: (error: any Error, at: Date)?
        var fetchedBytes: Int64 = 0
        var fetchStarted: Date?
    }
    let guarded: Guarded<State>

    init(content: FileSpec, model: String, reader: FailoverReader, settings: CacheEngine.Settings, root: CacheRoot,
         locks: LockManager, state: StateStore?, scheduler: FetchScheduler, hashWorkers: HashWorkers, cancel: CancellationToken = .none,
         onCommit: (@Sendable (String) -> Void)? = nil,
         onDiscard: (@Sendable (String) -> Void)? = nil) {
        self.content = content
        self.model = model
        self.reader = reader
        self.settings = settings
        self.root = root
        self.store = BlobStore(root: root)
        self.locks = locks
        self.state = state
        self.scheduler = scheduler
        self.hashWorkers = hashWorkers
        self.cancel = cancel
        self.onCommit = onCommit
        self.onDiscard = onDiscard
        self.policy = PartialFile.Policy(persistBytes: settings.persistBytes, persistInterval: settings.persistInterval)
        let chunked = content.chunks != nil
        if let chunkSize = content.chunkSize, chunked {
            blockSize = max(1, chunkSize)
        } else {
            blockSize = max(1, min(settings.blockSize, settings.jobSize))
        }
        let ledger = BlockLedger(size: content.size, blockSize: blockSize, chunked: chunked,
                                 jobBlocks: max(1, Int(min(settings.jobSize / blockSize, 1 << 16))))
        guarded = Guarded(State(ledger: ledger, digest: WholeFileDigest(size: content.size)))
        guarded.withLock { refreshFromDisk(&$0) }
    }

    // MARK: - What readers call

    public var snapshot: Snapshot {
        guarded.withLock { s in
            Snapshot(phase: s.phase, bytesPresent: s.phase == .complete ? content.size : s.ledger.bytesPresent, size: content.size,
                     inFlightBlocks: s.ledger.inFlight.count, generation: s.generation, lastSource: s.lastSource,
                     error: s.corrupt.map { "\($0.error)" }, fetchedHere: s.ledger.fetchedHere,
                     corruptChunks: content.chunks == nil ? [] : s.ledger.coolingDown(now: Date()),
                     digestReadBack: s.digest.accounting.readBack, digestRestarts: s.digest.accounting.restarts)
        }
    }

    /// Why the file cannot be served now (no source had good bytes, and the cool-down is not
    /// over); nil when it can be tried. A cool-down that is over is ended here.
    public var unavailableReason: String? {
        guarded.withLock { s in
            guard let corrupt = s.corrupt else { return nil }
            guard corrupt.until <= Date() else { return "\(corrupt.error)" }
            heal(&s)
            return nil
        }
    }

    /// The bytes present (every byte once the file is complete).
    public var presentRanges: RangeSet {
        guarded.withLock { $0.phase == .complete ? RangeSet([0..<content.size]) : $0.ledger.present }
    }

    /// Whether every byte of `range` is already here (a read of it waits for nothing).
    public func isPresent(_ range: Range<Int64>) -> Bool {
        guarded.withLock { $0.phase == .complete || $0.ledger.contains(range) }
    }

    /// Blocks until `range` can be served (fetched, and verified as the mode requires),
    /// fetching what is missing at `priority`.
    ///
    /// - Throws: the source error when a needed fetch failed after retries and failover,
    ///   ``OrchestratorError/checksumMismatch(path:expected:actual:)`` when no source has good
    ///   bytes, a `.timeout` `SourceError` past `timeout` seconds, `.cancelled` on cancel.
    public func require(_ range: Range<Int64>, priority: FetchPriority, timeout: Double, cancel: CancellationToken = .none) throws {
        let wanted = range.clamped(to: 0..<content.size)
        guard !wanted.isEmpty else { return }
        let strict = settings.verifyMode == .strict && content.chunks == nil
        repeat {
            try wait(timeout: timeout, cancel: cancel, scheduleRange: strict ? 0..<content.size : wanted, priority: priority) { s in
                !strict && s.ledger.contains(wanted)
            }
        } while try !checkRecordedChunks(in: wanted)
    }

    /// Hashes the chunks of `range` that a range map claimed but this process has not
    /// checked; drops those that do not match their digest. Whether all of them matched.
    private func checkRecordedChunks(in range: Range<Int64>) throws -> Bool {
        guard let digests = content.chunks else { return true }
        let (unchecked, file, generation) = guarded.withLock { s in
            (s.phase == .complete ? [] : s.ledger.uncheckedBlocks(in: range), s.partial?.file, s.generation)
        }
        guard !unchecked.isEmpty else { return true }
        guard let file else { return false }   // the file went away: wait again
        var allGood = true
        for block in unchecked {
            let bytes = guarded.withLock { $0.ledger.blockRange(block) }
            let digest = try Self.hash(file.descriptor, bytes)
            guarded.withLock(notify: true) { s in
                guard s.generation == generation, s.phase != .complete else { return }
                let good = digest == digests[block]
                s.ledger.checked(block, good: good)
                if !good {
                    s.digest.invalidate(from: bytes.lowerBound)
                    if s.phase == .verifying { s.phase = .partial }
                    allGood = false
                }
            }
        }
        return allGood
    }

    /// Queues fetches of `range` without waiting (readahead, `hydrate=open`).
    public func prefetch(_ range: Range<Int64>, priority: FetchPriority) {
        let wanted = range.clamped(to: 0..<content.size)
        guard !wanted.isEmpty else { return }
        guarded.withLock { s in
            guard s.phase == .partial, takeOwnership(&s) else { return }
            schedule(&s, wanted, priority: priority, skippingFailuresSince: nil)
        }
    }

    /// Blocks until the whole file is verified and in `.blobs/`; returns the blob's path.
    /// `progress` is called with the bytes present so far.
    public func requireComplete(timeout: Double, cancel: CancellationToken = .none,
                                progress: ((Int64) -> Void)? = nil) throws -> String {
        try wait(timeout: timeout, cancel: cancel, scheduleRange: 0..<content.size, priority: .background, progress: progress) { _ in false }
        return blobPath
    }

    /// Reads up to `count` bytes at `offset` once they are servable (the mount's read path).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, priority: FetchPriority = .demand,
                     timeout: Double, cancel: CancellationToken = .none) throws -> Int {
        let end = min(content.size, offset + Int64(min(buffer.count, Int(Int32.max))))
        guard offset >= 0, offset < end else { return 0 }
        let file = try prepareRead(offset..<end, priority: priority, timeout: timeout, cancel: cancel)
        return try file.descriptor.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(end - offset)]), at: offset)
    }

    /// Waits until `range` is servable and returns the file that holds it (the blob once
    /// complete, else the partial file): the mount replies straight from that descriptor.
    /// The file is the one the bytes were found present in, whatever happens next.
    public func prepareRead(_ range: Range<Int64>, priority: FetchPriority = .demand, timeout: Double,
                            cancel: CancellationToken = .none) throws -> SharedDescriptor {
        let wanted = range.clamped(to: 0..<content.size)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            try require(wanted, priority: priority, timeout: max(0, deadline.timeIntervalSinceNow), cancel: cancel)
            let file = guarded.withLock { s -> SharedDescriptor? in
                if s.phase == .complete { return s.blob?.file }
                let strict = settings.verifyMode == .strict && content.chunks == nil
                guard !strict, s.ledger.contains(wanted), s.ledger.uncheckedBlocks(in: wanted).isEmpty else { return nil }
                return s.partial?.file
            }
            if let file { return file }
            // Dropped between the wait and now (the file was removed or replaced): wait again.
            if Date() >= deadline {
                throw SourceError(.timeout, source: content.path, message: "bytes \(wanted.lowerBound)..<\(wanted.upperBound) not available within \(Int(timeout)) s")
            }
        }
    }

    /// The blob, open, once the content is complete and verified and still in `.blobs/`; nil before.
    public var verifiedBlob: SharedDescriptor? {
        releaseBlobIfRemoved()
        return guarded.withLock { $0.phase == .complete ? $0.blob?.file : nil }
    }

    /// Drops the blob when it was removed or replaced at its name (GC, `ensure --force`, a
    /// quarantine), so its space is freed and the next read fetches again. Whether it did.
    @discardableResult
    public func releaseBlobIfRemoved() -> Bool {
        guard let blob = guarded.withLock({ $0.phase == .complete ? $0.blob : nil }), blob.isGone(content.sha256, root: root) else {
            return false
        }
        guarded.withLock(notify: true) { s in
            guard s.phase == .complete, s.blob?.identity == blob.identity else { return }
            resetGeneration(&s)
        }
        return true
    }

    /// Syncs what has arrived and records it (shutdown); the fetch can resume later. Blocks
    /// whose jobs the stopped scheduler dropped are no longer in flight, so once the running
    /// jobs end (at once when their transfers were cancelled) the file lock is given back and
    /// another engine or process can take the fetch over.
    public func suspend() {
        guarded.withLock(notify: true) { s in
            let dropped = s.tickets.filter { $0.value.isDropped }.map(\.key)
            s.ledger.release(dropped)
            for block in dropped { s.tickets[block] = nil }
        }
        persist()
        releaseIfIdle()
    }

    // MARK: - Waiting

    /// The common wait loop: until `done` or completion, schedule what is missing, surface
    /// failures that happened while waiting, follow another process's progress.
    private func wait(timeout: Double, cancel: CancellationToken, scheduleRange: Range<Int64>, priority: FetchPriority,
                      progress: ((Int64) -> Void)? = nil, done: (State) -> Bool) throws {
        let started = Date()
        let deadline = started.addingTimeInterval(timeout)
        guarded.withLock { $0.waiters += 1 }
        defer {
            guarded.withLock { $0.waiters -= 1 }
            releaseIfIdle()
        }
        var lastReported: Int64 = -1
        var reportedComplete = false
        try guarded.loop { s -> Guarded<State>.Step<Void> in
            let now = Date()
            if s.phase == .complete {
                // Never call out with the lock held: the callback may read snapshots.
                if let progress, !reportedComplete {
                    reportedComplete = true
                    let size = content.size
                    return .unlocked { progress(size) }
                }
                return .finished(())
            }
            if let corrupt = s.corrupt {
                guard corrupt.until <= now else { throw corrupt.error }
                heal(&s)
            }
            if done(s) { return .finished(()) }
            if cancel.isCancelled { throw SourceError(.cancelled, source: content.path, message: "cancelled") }
            if let progress, s.ledger.bytesPresent != lastReported {
                let present = s.ledger.bytesPresent
                lastReported = present
                return .unlocked { progress(present) }
            }
            if let failure = s.localFailure, failure.at >= started { throw failure.error }
            if let failure = s.ledger.failure(in: scheduleRange, since: started, now: now) { throw failure }
            if takeOwnership(&s) {
                schedule(&s, scheduleRange, priority: priority, skippingFailuresSince: started)
                // Every byte is here but nothing digests it (say, a process died between its
                // last byte and its commit, or the last bytes came from its map): start the digest.
                if s.ledger.isComplete && s.ledger.inFlight.isEmpty && !s.hashing { requestHash(&s) }
            } else if s.phase == .partial {
                refreshFromDisk(&s)   // another process fetches: follow its range map
            }
            if s.phase == .complete || s.corrupt != nil { return .wait(until: now) }   // decided: step again at once
            if now >= deadline {
                throw SourceError(.timeout, source: content.path,
                                  message: "bytes \(scheduleRange.lowerBound)..<\(scheduleRange.upperBound) not available within \(Int(timeout)) s")
            }
            return .wait(until: min(deadline, now.addingTimeInterval(s.ownership == nil ? 0.05 : 0.5)))
        }
    }

    /// The cool-down after a whole-file mismatch at every source is over: try them all again.
    private func heal(_ s: inout State) {
        s.corrupt = nil
        s.excluded = [:]
        if s.phase == .corrupt { s.phase = .partial }
    }

    // MARK: - Scheduling (lock held)

    /// Claims what `range` needs and queues one job per run of blocks; promotes queued jobs a
    /// waiter now needs sooner. Blocks that failed after `since` are left alone: the waiter
    /// that asked reports that failure instead of retrying forever.
    private func schedule(_ s: inout State, _ range: Range<Int64>, priority: FetchPriority, skippingFailuresSince since: Date?) {
        for block in s.ledger.inFlightBlocks(in: range) {
            if let ticket = s.tickets[block], ticket.priority > priority {
                scheduler.promote(ticket, to: priority)   // a reader waits: it must not queue behind prefetch
            }
        }
        let runs = s.ledger.claim(range, now: Date(), skippingFailuresSince: since)
        for run in runs {
            guard let first = run.first, let last = run.last else { continue }
            let span = s.ledger.blockRange(first).lowerBound..<s.ledger.blockRange(last).upperBound
            let generation = s.generation
            let ticket = scheduler.submit(priority) { [self] progress in
                fetch(span, blocks: run, generation: generation, hashInPassing: priority == .background, progress: progress)
            }
            guard !ticket.isDropped else {   // the engine is shutting down: nothing will fetch them
                s.ledger.release(run)
                continue
            }
            for block in run { s.tickets[block] = ticket }
        }
        if s.fetchStarted == nil && !runs.isEmpty { s.fetchStarted = Date() }
    }

    /// Sources not to ask now: those that served bad bytes recently, unless that is all of them
    /// (then every source is tried; with chunk digests nothing bad is ever kept).
    private func excludedSources(_ s: State) -> Set<String> {
        let now = Date()
        let active = Set(s.excluded.filter { $0.value > now }.map(\.key))
        return reader.backends.allSatisfy({ active.contains($0.displayName) }) ? [] : active
    }

    // MARK: - Fetch jobs (worker threads)

    /// One job: fetches `span` (its `blocks`) into the partial file.
    /// - Parameter hashInPassing: feed the whole-file digest from memory as bytes are written.
    ///   Only for background jobs (`ensure`, hydration): a reader waits on a demand or readahead
    ///   job, and hashing there would sit on its path (+5 ms to a cold first byte, measured); the
    ///   digest reads those bytes back at a lower priority instead, which measured no slower.
    private func fetch(_ span: Range<Int64>, blocks: [Int], generation: Int, hashInPassing: Bool, progress: FetchProgress) {
        let setup = guarded.withLock(notify: true) { s -> (PartialFile, WholeFileDigest, Set<String>, [Range<Int64>])? in
            guard s.generation == generation, let partial = s.partial, partial.isWritable else {
                if s.generation == generation { s.ledger.release(blocks) }
                for block in blocks where s.tickets[block]?.isStarted == true { s.tickets[block] = nil }
                return nil
            }
            // Without chunk digests, bytes already present (say, recorded before a crash) are
            // not fetched again: only the gaps of the span are. With digests a chunk is whole or absent.
            let gaps = content.chunks == nil ? s.ledger.present.missing(in: span) : [span]
            return (partial, s.digest, excludedSources(s), gaps)
        }
        guard let (partial, digest, excluded, gaps) = setup else { return }
        do {
            // Bytes count (and are served) as soon as they have arrived — per MiB, or per
            // chunk once verified when the manifest has digests — so readers need not wait
            // for the whole job and a crash loses at most the piece in progress.
            let granularity = content.chunks == nil ? min(blockSize, 1 << 20) : blockSize
            for gap in gaps {
                let sink = BlockSink(FileSink(partial.file.descriptor), span: gap, blockSize: granularity,
                                     digestBlocks: content.chunks != nil, writeLock: writeLock, digest: hashInPassing ? digest : nil,
                                     progress: progress) { range, source, got in
                    try self.blockArrived(range, source: source, digest: got, partial: partial, generation: generation)
                }
                try reader.read(content, range: gap, into: sink, cancel: cancel, excluding: excluded, willTry: { sink.source = $0.displayName })
            }
            let (idle, healed) = guarded.withLock(notify: true) { s -> (Bool, Bool) in
                guard s.generation == generation else { return (false, false) }
                // A chunk one source got wrong and another delivered: that source waits a while.
                for block in blocks {
                    for source in s.badChunks.removeValue(forKey: block) ?? [] {
                        s.excluded[source] = Date().addingTimeInterval(settings.corruptCoolDown)
                    }
                }
                let healed = content.chunks != nil && blocks.contains { s.ledger.failures[$0]?.retryAfter != nil }
                s.ledger.jobSucceeded(blocks)
                for block in blocks { s.tickets[block] = nil }
                // In the same step: a waiter woken now must not find the fetch idle and let
                // go of it before its digest is asked for. Bytes fetched for readers: the
                // digest may wait until the engine stops fetching (background fetches digest
                // their bytes in passing, and someone waits for the commit).
                requestHash(&s, deferrable: !hashInPassing)
                return (s.ledger.inFlight.isEmpty, healed && s.ledger.coolingDown(now: Date()).isEmpty)
            }
            if healed { try? state?.setFileState(nil, sha256: content.sha256) }
            if idle { persist() }
            releaseIfIdle()
        } catch {
            let now = Date()
            let coolDown = settings.corruptCoolDown
            let everywhere = guarded.withLock(notify: true) { s -> [Int: Set<String>] in
                guard s.generation == generation else { return [:] }
                var bad: [Int: Set<String>] = [:]
                for block in blocks { if let sources = s.badChunks.removeValue(forKey: block) { bad[block] = sources } }
                for source in bad.values.flatMap({ $0 }) { s.excluded[source] = now.addingTimeInterval(coolDown) }
                // Chunks no source had good bytes for: the job tried every source it may.
                let allCorrupt = (error as? AllSourcesFailedError).map { !$0.failures.isEmpty && $0.failures.allSatisfy { $0.kind == .corrupt } } ?? false
                let everywhere = allCorrupt ? bad : [:]
                s.ledger.jobFailed(blocks, error: error, now: now, corruptEverywhere: Set(everywhere.keys), coolDown: coolDown)
                for block in blocks { s.tickets[block] = nil }
                return everywhere
            }
            persist()   // blocks that did arrive before the failure stay recorded
            if !everywhere.isEmpty {
                let chunks = everywhere.keys.sorted().map { block -> String in
                    let range = content.chunkRange(block) ?? 0..<0
                    return "chunk \(block) (bytes \(range.lowerBound)..<\(range.upperBound))"
                }
                try? state?.setFileState(.corrupt, sha256: content.sha256, size: content.size,
                                         detail: "\(chunks.joined(separator: ", ")) of \(content.path) did not match its digest at any source (tried again after \(Int(coolDown)) s): \(error)")
            }
            releaseIfIdle()
            if let state, (error as? any CodedError)?.code != .cancelled {
                try? state.recordDownload(.init(model: model, path: content.path, sha256: content.sha256, source: nil,
                                                bytes: 0, duration: 0, outcome: "failed", error: "\(error)"))
            }
        }
    }

    /// A block of a job is on disk: verify it (with chunk digests), then make it servable and
    /// record it in the map. `digest`: the block's sha256 as the sink saw its bytes go by (nil:
    /// read it back).
    private func blockArrived(_ range: Range<Int64>, source: String, digest received: String?, partial: PartialFile,
                              generation: Int) throws {
        if let digests = content.chunks {   // then the sink reports whole chunks
            let block = Int(range.lowerBound / blockSize)
            let digest = try received ?? Self.hash(partial.file.descriptor, range)
            guard block < digests.count, digest == digests[block] else {
                guarded.withLock { s in
                    guard s.generation == generation else { return }
                    s.badChunks[block, default: []].insert(source)
                    s.digest.invalidate(from: range.lowerBound)
                }
                throw SourceError(.corrupt, source: source,
                                  message: "chunk \(block) (bytes \(range.lowerBound)..<\(range.upperBound)) of \(content.path) does not match its digest")
            }
        }
        let ranges = guarded.withLock(notify: true) { s -> RangeSet? in
            guard s.generation == generation, s.partial === partial, s.ledger.landed(range) else { return nil }
            s.fetchedBytes += Int64(range.count)
            s.servedBy.insert(source)
            s.lastSource = source
            if s.ledger.isComplete { s.phase = .verifying }
            return s.ledger.present
        }
        if let ranges { try partial.record(range, ranges: ranges) }
    }

    /// The most a reader's readahead should have asked for ahead of it: what this file's
    /// sources deliver in ``readaheadLead`` seconds at their measured rate per range request
    /// (``FailoverReader/measuredRate(striped:)``), over as many parallel requests as the
    /// fetch has workers; at least ``minimumReadahead``, at
    /// most `cap` (`prefetch=`). Before the sources are measured: `cap`. A slow source (a
    /// 2 MB/s mirror) then keeps 32 MiB ahead instead of hundreds, so a reader that stops
    /// early leaves little fetched for nothing; a fast one keeps the full window.
    public func readaheadWindow(cap: Int64) -> Int64 {
        Self.readaheadWindow(rate: reader.measuredRate(striped: reader.stripes(content)), connections: settings.connections, cap: cap)
    }

    /// Seconds of transfer a readahead window holds (``readaheadWindow(cap:)``).
    public static let readaheadLead = 2.0
    /// The smallest window a measured rate gives (two range requests of 16 MiB).
    public static let minimumReadahead: Int64 = 32 << 20

    static func readaheadWindow(rate: Double?, connections: Int, cap: Int64) -> Int64 {
        guard cap > 0 else { return 0 }
        guard let rate, rate.isFinite, rate > 0 else { return cap }
        let bytes = rate * Double(max(1, connections)) * readaheadLead
        guard bytes < Double(cap) else { return cap }
        return min(cap, max(minimumReadahead, Int64(bytes)))
    }

    static func hash(_ fd: FileDescriptor, _ range: Range<Int64>) throws -> String {
        let hasher = SHA256Hasher()
        // 256 KiB: stays in cache between the read and the hash, and is not a fresh mmap
        // (page faults and zeroing) on every call as 4 MiB was.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 4096)
        defer { buffer.deallocate() }
        var offset = range.lowerBound
        while offset < range.upperBound {
            let want = Int(min(Int64(buffer.count), range.upperBound - offset))
            let n = try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: offset)
            guard n > 0 else { throw SystemError(errno: EIO, operation: "read (short file)", path: nil) }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            offset += Int64(n)
        }
        return hasher.finalize().hex
    }
}

extension Range where Bound == Int64 {
    func clamped(to limits: Range<Int64>) -> Range<Int64> {
        let lower = Swift.min(Swift.max(lowerBound, limits.lowerBound), limits.upperBound)
        return lower..<Swift.max(lower, Swift.min(upperBound, limits.upperBound))
    }
}
