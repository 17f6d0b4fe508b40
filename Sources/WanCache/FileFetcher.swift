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

/// Fetches one file's content (one sha256) into the cache and tells readers when the bytes
/// they need are there. One instance per content per process: every reader, the mount's
/// readahead and `ensure` share it, so each byte is fetched once.
///
/// The file is split into blocks (the manifest's chunks when it has chunk digests, else
/// ``CacheEngine/Settings/blockSize``). Missing blocks are fetched by jobs on the shared
/// ``FetchScheduler`` (runs of blocks, one range request each), written into a sparse
/// partial file in `.tmp/`, and recorded in its ``RangeMapLog`` once synced. With chunk
/// digests each block is verified before it counts as present (bad bytes fail over to the
/// next source). The whole file is hashed as its contiguous prefix grows; on a match it is
/// moved into `.blobs/`, on a mismatch it is quarantined and fetched again from the
/// sources that did not serve it.
///
/// Across processes, one process at a time owns the fetch (an exclusive file lock);
/// others follow its progress through the range map until they can take over.
public final class FileFetcher: @unchecked Sendable {
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
        /// With chunk digests: every byte present was checked against its chunk's digest by
        /// this process as it arrived, so the whole file will not be hashed again.
        public let verifiedInPassing: Bool
    }

    /// The content: size, sha256, chunk digests. `path` is where the sources have it.
    public let content: FileSpec
    /// The model (directory name) that asked first, for the download history.
    public let model: String
    public let blockSize: Int64
    let jobBlocks: Int
    let reader: FailoverReader
    let settings: CacheEngine.Settings
    let resolver: ModelResolver
    let locks: LockManager
    let state: StateStore?
    let scheduler: FetchScheduler
    /// Where the whole-file digest runs (lower CPU priority than fetching and serving).
    let hashWorkers: HashWorkers
    /// Ends every transfer of this fetcher when cancelled (the engine's shutdown).
    let cancel: CancellationToken
    /// Called with the blob's path once the content is committed (the engine links it into the model).
    let onCommit: (@Sendable (String) -> Void)?
    /// Called (with the content's sha256) when bytes that may have been served are discarded
    /// (a whole-file mismatch): caches above, such as the kernel's, must drop them.
    let onDiscard: (@Sendable (String) -> Void)?

    var partialPath: String { resolver.tmpDir + "/" + content.sha256 + ".part" }
    var mapPath: String { resolver.tmpDir + "/" + content.sha256 + ".map" }
    var blobPath: String { resolver.blobPath(sha256: content.sha256) }
    var blockCount: Int { content.size == 0 ? 0 : Int((content.size + blockSize - 1) / blockSize) }

    private let condition = NSCondition()
    // Guarded by `condition`:
    private var present = RangeSet()
    private var inFlight = Set<Int>()
    /// The queued job of each in-flight block, so a demand read can promote it.
    private var tickets: [Int: FetchTicket] = [:]
    /// The blob, opened once the file is complete (the warm path reads from it).
    private var blobFile: SharedDescriptor?
    private var blockErrors: [Int: (error: any Error, at: Date)] = [:]
    private var phase: Phase = .partial
    private var terminalError: (any CodedError)?
    private var generation = 0
    private var waiters = 0
    private var ownership: LockManager.Lock?
    private var data: SharedDescriptor?
    private var log: RangeMapLog?
    private var excluded = Set<String>()
    private var servedBy = Set<String>()
    private var lastSource: String?
    private var hashing = false
    private var hashPending = false
    /// A digest job is queued on `hashWorkers` (it counts as busy, like `hashing`).
    private var hashQueued = false
    /// With chunk digests: every byte present was checked against its chunk's digest by this
    /// process as it arrived (nothing came from a range map written before, which a power
    /// loss may have left ahead of the data). Then the whole file is verified once the last
    /// chunk is, and the whole-file digest is not computed again: on 2 cores it was a third
    /// of a cold read's CPU. (`wan models verify` and the sidecar's health passes still
    /// re-hash whole files.)
    private var verifiedInPassing: Bool
    /// Chunks that a range map written by another or an earlier process claims, not yet
    /// checked against their digests by this one. Each is hashed from the file before it is
    /// first served; a bad one (a power loss left the map ahead of the data) is dropped and
    /// fetched again.
    private var recordedChunks = Set<Int>()
    /// Recorded chunks found bad here: not taken from a map again until this process has
    /// fetched them itself (a follower would otherwise re-read the owner's stale claim).
    private var rejectedChunks = Set<Int>()
    private var fetchedBytes: Int64 = 0
    private var fetchStarted: Date?
    // Touched only by the thread that holds `hashing`:
    private var hasher = SHA256Hasher()
    private var hashedUpTo: Int64 = 0
    /// Serializes map appends and syncs. Order: `persistLock` before `condition`.
    private let persistLock = NSLock()
    private var unsyncedBytes: Int64 = 0   // guarded by persistLock
    private var lastSync = Date()          // guarded by persistLock
    private var syncing = false            // guarded by persistLock
    /// Serializes the fetch jobs' writes into the partial file. ext4 holds the inode lock
    /// through every buffered write anyway; eight jobs contending for it in the kernel spun
    /// (rwsem_spin_on_owner was 4-5% of a cold read's CPU), waiting here sleeps.
    private let writeLock = NSLock()

    init(content: FileSpec, model: String, reader: FailoverReader, settings: CacheEngine.Settings, resolver: ModelResolver,
         locks: LockManager, state: StateStore?, scheduler: FetchScheduler, hashWorkers: HashWorkers, cancel: CancellationToken = .none,
         onCommit: (@Sendable (String) -> Void)? = nil,
         onDiscard: (@Sendable (String) -> Void)? = nil) {
        self.content = content
        self.model = model
        self.reader = reader
        self.settings = settings
        self.resolver = resolver
        self.locks = locks
        self.state = state
        self.scheduler = scheduler
        self.hashWorkers = hashWorkers
        self.cancel = cancel
        self.onCommit = onCommit
        self.onDiscard = onDiscard
        if let chunkSize = content.chunkSize, content.chunks != nil {
            blockSize = chunkSize
        } else {
            blockSize = min(settings.blockSize, settings.jobSize)
        }
        jobBlocks = max(1, Int(settings.jobSize / blockSize))
        verifiedInPassing = content.chunks != nil
        condition.lock()
        refreshFromDisk()
        condition.unlock()
    }

    // MARK: - What readers call

    public var snapshot: Snapshot {
        condition.lock()
        defer { condition.unlock() }
        return Snapshot(phase: phase, bytesPresent: phase == .complete ? content.size : present.count, size: content.size,
                        inFlightBlocks: inFlight.count, generation: generation, lastSource: lastSource,
                        error: terminalError.map { "\($0)" }, verifiedInPassing: verifiedInPassing)
    }

    /// Whether every byte of `range` is already here (a read of it waits for nothing).
    public func isPresent(_ range: Range<Int64>) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        return phase == .complete || present.contains(range)
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
            try wait(timeout: timeout, cancel: cancel, scheduleRange: strict ? 0..<content.size : wanted, priority: priority) {
                strict ? false : self.present.contains(wanted)
            }
        } while try !checkRecordedChunks(in: wanted)
    }

    /// Hashes the chunks of `range` that a range map claimed but this process has not
    /// checked; drops those that do not match their digest. Whether all of them matched.
    private func checkRecordedChunks(in range: Range<Int64>) throws -> Bool {
        guard let digests = content.chunks else { return true }
        condition.lock()
        let unchecked = blocks(in: range).filter { recordedChunks.contains($0) }
        let file = data
        condition.unlock()
        guard !unchecked.isEmpty else { return true }
        var allGood = true
        for block in unchecked {
            let digest: String
            do {
                guard let file else { throw SourceError(.localIO, source: content.path, message: "the partial file is not open") }
                digest = try Self.hash(file.descriptor, blockRange(block))
            } catch {
                condition.lock()
                let complete = phase == .complete   // committed meanwhile: the blob is verified
                condition.unlock()
                if complete { return true }
                throw error
            }
            condition.lock()
            recordedChunks.remove(block)
            if digest != digests[block], phase != .complete {
                rejectedChunks.insert(block)
                present.remove(blockRange(block))
                if phase == .verifying { phase = .partial }
                allGood = false
            }
            condition.unlock()
        }
        return allGood
    }

    /// Queues fetches of `range` without waiting (readahead, `hydrate=open`).
    public func prefetch(_ range: Range<Int64>, priority: FetchPriority) {
        let wanted = range.clamped(to: 0..<content.size)
        condition.lock()
        defer { condition.unlock() }
        guard phase == .partial, !wanted.isEmpty, takeOwnership() else { return }
        schedule(wanted, priority: priority)
    }

    /// Blocks until the whole file is verified and in `.blobs/`; returns the blob's path.
    /// `progress` is called with the bytes present so far.
    public func requireComplete(timeout: Double, cancel: CancellationToken = .none,
                                progress: ((Int64) -> Void)? = nil) throws -> String {
        if content.size == 0 {
            condition.lock()
            if phase != .complete && takeOwnership() { advanceHashLocked() }
            condition.unlock()
        }
        try wait(timeout: timeout, cancel: cancel, scheduleRange: 0..<content.size, priority: .background, progress: progress) { false }
        return blobPath
    }

    /// Reads up to `count` bytes at `offset` once they are servable (the mount's read path).
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64, priority: FetchPriority = .demand,
                     timeout: Double, cancel: CancellationToken = .none) throws -> Int {
        let end = min(content.size, offset + Int64(buffer.count))
        guard offset < end else { return 0 }
        try require(offset..<end, priority: priority, timeout: timeout, cancel: cancel)
        let file = try servingFile()
        return try file.descriptor.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<Int(end - offset)]), at: offset)
    }

    /// Waits until `range` is servable and returns the file that holds it (the blob once
    /// complete, else the partial file): the mount replies straight from that descriptor.
    public func prepareRead(_ range: Range<Int64>, priority: FetchPriority = .demand, timeout: Double,
                            cancel: CancellationToken = .none) throws -> SharedDescriptor {
        try require(range, priority: priority, timeout: timeout, cancel: cancel)
        return try servingFile()
    }

    /// The blob, open, once the content is complete and verified; nil before.
    public var verifiedBlob: SharedDescriptor? {
        condition.lock()
        let complete = phase == .complete
        condition.unlock()
        return complete ? try? servingFile() : nil
    }

    /// The open file to serve reads from: the blob once complete, else the partial file.
    private func servingFile() throws -> SharedDescriptor {
        condition.lock()
        defer { condition.unlock() }
        if phase != .complete, let data { return data }
        if phase == .complete, let blobFile { return blobFile }
        let opened = SharedDescriptor(try FileDescriptor.open(phase == .complete ? blobPath : partialPath, .readOnly))
        if phase == .complete { blobFile = opened }
        return opened
    }

    /// Syncs what has arrived and records it (shutdown); the fetch can resume later. Blocks
    /// whose jobs the stopped scheduler dropped are no longer in flight, so once the running
    /// jobs end (at once when their transfers were cancelled) the file lock is given back and
    /// another engine or process can take the fetch over.
    public func suspend() {
        condition.lock()
        for (block, ticket) in tickets where ticket.isDropped {
            inFlight.remove(block)
            tickets[block] = nil
        }
        condition.broadcast()
        condition.unlock()
        persist()
        condition.lock()
        releaseOwnershipIfIdle()
        condition.unlock()
    }

    // MARK: - Waiting

    /// The common wait loop: until `done()` or completion, schedule what is missing, surface
    /// failures that happened while waiting, follow another process's progress.
    private func wait(timeout: Double, cancel: CancellationToken, scheduleRange: Range<Int64>, priority: FetchPriority,
                      progress: ((Int64) -> Void)? = nil, done: () -> Bool) throws {
        let started = Date()
        let deadline = started.addingTimeInterval(timeout)
        condition.lock()
        waiters += 1
        defer {
            waiters -= 1
            releaseOwnershipIfIdle()
            condition.unlock()
        }
        var lastReported: Int64 = -1
        while true {
            if phase == .complete {
                if let progress {   // never call out with the lock held: the callback may read snapshots
                    condition.unlock()
                    progress(content.size)
                    condition.lock()
                }
                return
            }
            if let terminalError { throw terminalError }
            if done() { return }
            if cancel.isCancelled { throw SourceError(.cancelled, source: content.path, message: "cancelled") }
            if let progress, present.count != lastReported {
                lastReported = present.count
                condition.unlock()
                progress(lastReported)
                condition.lock()
                continue
            }
            if let failure = failure(in: scheduleRange, since: started) { throw failure }
            if takeOwnership() {
                schedule(scheduleRange, priority: priority, skippingFailuresSince: started)
                // Every byte is here but nothing will digest it (say, a process died between
                // its last byte and its commit): start the digest.
                if present.count == content.size && inFlight.isEmpty && !hashing { requestHashLocked() }
            } else {
                refreshFromDisk()   // another process fetches: follow its range map
            }
            if Date() >= deadline {
                throw SourceError(.timeout, source: content.path, message: "bytes \(scheduleRange.lowerBound)..<\(scheduleRange.upperBound) not available within \(Int(timeout)) s")
            }
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(ownership == nil ? 0.05 : 0.5)))
        }
    }

    /// A fetch failure of a block in `range` that happened after `since` (and is not being retried).
    private func failure(in range: Range<Int64>, since: Date) -> (any Error)? {
        for block in blocks(in: range) where !inFlight.contains(block) {
            if let entry = blockErrors[block], entry.at >= since { return entry.error }
        }
        return nil
    }

    // MARK: - Scheduling (condition held)

    private func blocks(in range: Range<Int64>) -> Range<Int> {
        guard !range.isEmpty, content.size > 0 else { return 0..<0 }
        return Int(range.lowerBound / blockSize)..<Int((range.upperBound + blockSize - 1) / blockSize)
    }

    private func blockRange(_ block: Int) -> Range<Int64> {
        let start = Int64(block) * blockSize
        return start..<min(start + blockSize, content.size)
    }

    /// Queues jobs for the blocks of `range` that are neither present nor being fetched,
    /// grouped into runs of up to `jobBlocks`. Blocks that failed after `since` are left
    /// alone: the waiter that asked reports that failure instead of retrying forever.
    private func schedule(_ range: Range<Int64>, priority: FetchPriority, skippingFailuresSince since: Date? = nil) {
        var run: [Int] = []
        func flush() {
            guard let first = run.first, let last = run.last else { return }
            let span = blockRange(first).lowerBound..<blockRange(last).upperBound
            let blocks = run
            run = []
            let ticket = scheduler.submit(priority) { [self] in fetch(span, blocks: blocks) }
            guard !ticket.isDropped else {   // the engine is shutting down: nothing will fetch them
                for block in blocks { inFlight.remove(block) }
                return
            }
            for block in blocks { tickets[block] = ticket }
        }
        for block in blocks(in: range) {
            var failedRecently = false
            if let since, let entry = blockErrors[block] { failedRecently = entry.at >= since }
            if inFlight.contains(block), let ticket = tickets[block], ticket.priority > priority {
                scheduler.promote(ticket, to: priority)   // a reader waits: it must not queue behind prefetch
            }
            if inFlight.contains(block) || present.contains(blockRange(block)) || failedRecently {
                flush()
                continue
            }
            inFlight.insert(block)
            run.append(block)
            if run.count == jobBlocks { flush() }
        }
        flush()
        if fetchStarted == nil && !inFlight.isEmpty { fetchStarted = Date() }
    }

    // MARK: - Fetch jobs (worker threads)

    private func fetch(_ span: Range<Int64>, blocks: [Int]) {
        condition.lock()
        let file = data   // held until the job ends, so its descriptor stays open
        let excludedNow = excluded
        let currentGeneration = generation
        // Without chunk digests, bytes already present (say, recorded before a crash) are
        // not fetched again: only the gaps of the span are. With digests a chunk is whole or absent.
        let gaps = content.chunks == nil ? present.missing(in: span) : [span]
        condition.unlock()
        do {
            guard let file else { throw SourceError(.localIO, source: content.path, message: "the partial file is not open") }
            // Bytes count (and are served) as soon as they have arrived — per MiB, or per
            // chunk once verified when the manifest has digests — so readers need not wait
            // for the whole job and a crash loses at most the piece in progress.
            let granularity = content.chunks == nil ? min(blockSize, 1 << 20) : blockSize
            for gap in gaps {
                let sink = BlockSink(FileSink(file.descriptor), span: gap, blockSize: granularity,
                                     digestBlocks: content.chunks != nil, writeLock: writeLock) { range, source, digest in
                    try self.blockArrived(range, source: source, digest: digest, file: file, generation: currentGeneration)
                }
                try reader.read(content, range: gap, into: sink, cancel: cancel, excluding: excludedNow, willTry: { sink.source = $0.displayName })
            }
            condition.lock()
            for block in blocks {
                inFlight.remove(block)
                tickets[block] = nil
                blockErrors[block] = nil
            }
            condition.broadcast()
            let idle = inFlight.isEmpty
            condition.unlock()
            if idle { persist() }
            condition.lock()
            requestHashLocked()
            releaseOwnershipIfIdle()
            condition.unlock()
        } catch {
            condition.lock()
            for block in blocks {
                inFlight.remove(block)
                tickets[block] = nil
                if !present.contains(blockRange(block)) { blockErrors[block] = (error, Date()) }
            }
            condition.broadcast()
            condition.unlock()
            persist()   // blocks that did arrive before the failure stay recorded
            rejectCorruptSources(error)
            condition.lock()
            releaseOwnershipIfIdle()
            condition.unlock()
            if let state, (error as? any CodedError)?.code != .cancelled {
                try? state.recordDownload(.init(model: model, path: content.path, sha256: content.sha256, source: nil,
                                                bytes: 0, duration: 0, outcome: "failed", error: "\(error)"))
            }
        }
    }

    /// A block of a job is on disk: verify it (with chunk digests), then make it servable.
    /// `digest`: the block's sha256 as the sink saw its bytes go by (nil: read it back).
    private func blockArrived(_ range: Range<Int64>, source: String, digest received: String?, file: SharedDescriptor,
                              generation expected: Int) throws {
        if let digests = content.chunks {   // then the sink reports whole chunks
            let block = Int(range.lowerBound / blockSize)
            let digest = try received ?? Self.hash(file.descriptor, range)
            guard digest == digests[block] else {
                throw SourceError(.corrupt, source: source,
                                  message: "chunk \(block) (bytes \(range.lowerBound)..<\(range.upperBound)) of \(content.path) does not match its digest")
            }
        }
        condition.lock()
        defer { condition.unlock() }
        guard generation == expected, !present.contains(range) else { return }
        present.insert(range)
        if content.chunks != nil { rejectedChunks.remove(Int(range.lowerBound / blockSize)) }
        fetchedBytes += Int64(range.count)
        servedBy.insert(source)
        lastSource = source
        if present.count == content.size { phase = .verifying }
        condition.broadcast()
        condition.unlock()
        record(range, file: file)
        condition.lock()
    }

    static func hash(_ fd: FileDescriptor, _ range: Range<Int64>, into hasher: SHA256Hasher? = nil) throws -> String {
        let target = hasher ?? SHA256Hasher()
        // 256 KiB: stays in cache between the read and the hash, and is not a fresh mmap
        // (page faults and zeroing) on every call as 4 MiB was.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 4096)
        defer { buffer.deallocate() }
        var offset = range.lowerBound
        while offset < range.upperBound {
            let want = Int(min(Int64(buffer.count), range.upperBound - offset))
            let n = try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: offset)
            guard n > 0 else { throw SystemError(errno: 5, operation: "read (short file)", path: nil) }
            target.update(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            offset += Int64(n)
        }
        return hasher == nil ? target.finalize().hex : ""
    }

    // MARK: - Persistence

    /// Appends `range` to the map right away: its bytes were written before (kill -9 can
    /// never leave the map claiming bytes that are not in the file). The data is synced to
    /// the disk every `persistBytes` or `persistInterval`, by one thread while the others keep going,
    /// so after a power loss the map is at most that far ahead of the disk — and
    /// verification catches what it claims wrongly (a resumed file is hashed whole before
    /// it is committed).
    private func record(_ range: Range<Int64>, file: SharedDescriptor) {
        persistLock.lock()
        condition.lock()
        let log = self.log
        condition.unlock()
        guard let log else {
            persistLock.unlock()
            return
        }
        try? log.append([range])
        unsyncedBytes += Int64(range.count)
        let due = !syncing && (unsyncedBytes >= settings.persistBytes || Date().timeIntervalSince(lastSync) >= settings.persistInterval)
        if due { syncing = true }
        persistLock.unlock()
        if due { sync(file: file, log: log) }
    }

    /// Syncs the partial file and compacts the map (job ends, idle, commit).
    private func persist() {
        persistLock.lock()
        condition.lock()
        let file = data
        let log = self.log
        condition.unlock()
        let run = !syncing
        if run { syncing = true }
        persistLock.unlock()
        guard run, let file, let log else { return }
        sync(file: file, log: log)
    }

    /// fdatasync outside the lock (appends go on meanwhile), then compaction under it.
    private func sync(file: SharedDescriptor, log: RangeMapLog) {
        persistLock.lock()
        unsyncedBytes = 0
        persistLock.unlock()
        try? file.descriptor.syncData()
        condition.lock()
        let ranges = present
        condition.unlock()
        persistLock.lock()
        try? log.compactIfLarge(ranges, size: content.size, sha256: content.sha256)
        lastSync = Date()
        syncing = false
        persistLock.unlock()
    }

    // MARK: - Whole-file hashing

    /// Queues the digest of what has arrived on the hash workers, unless a job is queued
    /// already (it will see the newest bytes); it goes on from where it got to. Condition held.
    private func requestHashLocked() {
        guard !hashQueued, !verifiedInPassing || present.count == content.size else { return }
        hashQueued = true
        hashWorkers.submit { [self] in
            condition.lock()
            hashQueued = false
            advanceHashLocked()
            releaseOwnershipIfIdle()
            condition.unlock()
        }
    }

    /// Hashes the contiguous prefix as it grows; one thread at a time does the work. With
    /// every chunk verified in passing, commits once the last one is here instead.
    private func advanceHashLocked() {
        hashPending = true
        guard !hashing else { return }
        hashing = true
        defer { hashing = false }
        while hashPending {
            hashPending = false
            if verifiedInPassing {
                guard present.count == content.size, phase != .complete, data != nil else { continue }
                condition.unlock()
                finish(digest: nil)
                condition.lock()
                return
            }
            let target = present.contiguousPrefix
            guard target > hashedUpTo || (content.size == 0 && phase != .complete), let file = data else { continue }
            let from = hashedUpTo
            condition.unlock()
            var readError: (any Error)?
            do { _ = try Self.hash(file.descriptor, from..<target, into: hasher) } catch { readError = error }
            condition.lock()
            if let readError {
                blockErrors[0] = (readError, Date())
                condition.broadcast()
                return
            }
            hashedUpTo = target
            if hashedUpTo == content.size {
                condition.unlock()
                finish(digest: hasher.finalize().hex)
                condition.lock()
                return
            }
        }
    }

    /// The whole file is verified (its `digest`, or nil when every chunk was verified in
    /// passing): commit it as a blob, or quarantine it and start over.
    private func finish(digest: String?) {
        persist()
        guard let digest, digest != content.sha256 else {
            do {
                try commit()
            } catch {
                condition.lock()
                blockErrors[0] = (error, Date())
                condition.broadcast()
                condition.unlock()
            }
            return
        }
        quarantine(actual: digest)
    }

    private func commit() throws {
        condition.lock()
        let file = data
        condition.unlock()
        guard let fd = file?.descriptor else { throw SourceError(.localIO, source: content.path, message: "the partial file is not open") }
        try fd.sync()
        try fd.setPermissions(0o444)
        try FileSystem.createDirectories((blobPath as NSString).deletingLastPathComponent)
        try FileSystem.rename(partialPath, to: blobPath)
        try? FileSystem.unlink(mapPath)
        // The history is written before waiters wake: a CLI that exits right after must not lose it.
        condition.lock()
        let fetched = fetchedBytes
        let started = fetchStarted
        let source = lastSource
        condition.unlock()
        try? state?.setFileState(nil, sha256: content.sha256)
        if fetched > 0 {
            try? state?.recordDownload(.init(model: model, path: content.path, sha256: content.sha256, source: source, bytes: fetched,
                                             duration: started.map { Date().timeIntervalSince($0) } ?? 0, outcome: "completed"))
        }
        onCommit?(blobPath)
        condition.lock()
        phase = .complete
        data = nil
        log = nil
        present = RangeSet([0..<content.size])
        ownership?.release()
        ownership = nil
        condition.broadcast()
        condition.unlock()
    }

    /// Moves the bad bytes aside and starts over without the sources that served them; when
    /// no source is left the file is CORRUPT and every wait fails with CHECKSUM_FAIL.
    private func quarantine(actual: String) {
        let quarantineDir = resolver.tmpDir + "/quarantine"
        try? FileSystem.createDirectories(quarantineDir)
        try? FileSystem.rename(partialPath, to: quarantineDir + "/\(content.sha256).\(Int(Date().timeIntervalSince1970)).part")
        try? FileSystem.unlink(mapPath)
        condition.lock()
        // With chunk digests every chunk a source sent this time matched its digest, so no
        // source is to blame: the bad bytes were recorded before (a power loss can leave a
        // range map ahead of its data). They are all fetched again, verified in passing.
        let culprits = content.chunks == nil ? servedBy : []
        let fetched = fetchedBytes
        let remaining = reader.backends.filter { !excluded.contains($0.displayName) && !culprits.contains($0.displayName) }
        condition.unlock()
        // Recorded before anyone is woken: a CLI that exits on the error must leave the mark behind.
        let mismatch = OrchestratorError.checksumMismatch(path: content.path, expected: content.sha256, actual: actual)
        try? state?.setFileState(remaining.isEmpty ? .corrupt : nil, sha256: content.sha256,
                                 detail: "\(mismatch); served by \(culprits.sorted().joined(separator: ", "))")
        try? state?.recordDownload(.init(model: model, path: content.path, sha256: content.sha256,
                                         source: culprits.sorted().joined(separator: ","), bytes: fetched, duration: 0,
                                         outcome: "corrupt", error: mismatch.description))
        condition.lock()
        excluded.formUnion(culprits)
        servedBy = []
        present = RangeSet()
        generation += 1
        hasher = SHA256Hasher()
        hashedUpTo = 0
        verifiedInPassing = content.chunks != nil
        recordedChunks = []
        rejectedChunks = []
        data = nil
        log = nil
        if remaining.isEmpty {
            phase = .corrupt
            terminalError = mismatch
        } else {
            phase = .partial
            if let ownership, (try? openPartial()) == nil {
                ownership.release()
                self.ownership = nil
            }
        }
        condition.broadcast()
        condition.unlock()
        onDiscard?(content.sha256)
    }

    /// A chunk failed its digest: the sources that served it are not asked again, and when
    /// no source is left the file is CORRUPT (recorded before waiters wake), as after a
    /// whole-file mismatch. Nothing of the bad chunk was recorded or served.
    private func rejectCorruptSources(_ error: any Error) {
        guard content.chunks != nil, let failed = error as? AllSourcesFailedError else { return }
        let culprits = Set(failed.failures.filter { $0.kind == .corrupt }.map(\.source))
        guard !culprits.isEmpty else { return }
        condition.lock()
        excluded.formUnion(culprits)
        let remaining = reader.backends.filter { !excluded.contains($0.displayName) }
        condition.unlock()
        guard remaining.isEmpty else { return }
        try? state?.setFileState(.corrupt, sha256: content.sha256, detail: "\(failed)")
        condition.lock()
        phase = .corrupt
        terminalError = failed   // CHECKSUM_FAIL, naming each source and the chunk it got wrong (as the failed wait reports it)
        condition.broadcast()
        condition.unlock()
    }

    // MARK: - Ownership across processes (condition held)

    /// Takes the exclusive file lock if nobody else has it. The owner may fetch.
    private func takeOwnership() -> Bool {
        if ownership != nil { return true }
        guard phase == .partial, let lock = try? locks.tryAcquire(LockManager.fileLockName(content.sha256)) else { return false }
        ownership = lock
        refreshFromDisk()
        guard phase == .partial else { return true }
        do {
            try openPartial()
        } catch {
            ownership?.release()
            ownership = nil
            blockErrors[0] = (error, Date())
            return false
        }
        return true
    }

    /// Creates or reopens the sparse partial file and its map.
    private func openPartial() throws {
        try FileSystem.createDirectories(resolver.tmpDir)
        let fd = try FileDescriptor.open(partialPath, .readWrite, create: true)
        do {
            if try fd.info().size != content.size { try fd.truncate(to: content.size) }
            let (log, recorded) = try RangeMapLog.open(path: mapPath, size: content.size, sha256: content.sha256)
            learn(recorded)
            data = SharedDescriptor(fd)
            self.log = log
        } catch {
            fd.close()
            throw error
        }
    }

    /// Gives the lock back when nothing is running or waiting, so another process can take over.
    private func releaseOwnershipIfIdle() {
        guard let ownership, inFlight.isEmpty, waiters == 0, phase == .partial, !hashing, !hashQueued else { return }
        condition.unlock()
        persist()
        condition.lock()
        guard inFlight.isEmpty, waiters == 0, phase == .partial, self.ownership === ownership else { return }
        log = nil
        ownership.release()
        self.ownership = nil
    }

    /// Takes in ranges a map claims: present from now on, and, with chunk digests, to be
    /// checked before they are served.
    private func learn(_ recorded: RangeSet) {
        // What this process holds already it verified itself (or learned before): a map it
        // reopens after letting go of the file between two reads brings nothing new, and must
        // not cost the file its verification in passing.
        guard recorded.ranges.contains(where: { !present.missing(in: $0).isEmpty }) else { return }
        verifiedInPassing = false
        if content.chunks != nil {
            for range in recorded.ranges {
                for block in blocks(in: range) where !present.contains(blockRange(block)) && recorded.contains(blockRange(block)) {
                    recordedChunks.insert(block)
                }
            }
        }
        for range in recorded.ranges { present.insert(range) }
        for block in rejectedChunks { present.remove(blockRange(block)) }
    }

    /// Picks up what is on disk: a finished blob, or ranges another process recorded.
    private func refreshFromDisk() {
        if phase != .complete, FileManager.default.fileExists(atPath: blobPath) {
            phase = .complete
            present = RangeSet([0..<content.size])
            condition.broadcast()
            return
        }
        guard phase == .partial, let recorded = RangeMapLog.reload(path: mapPath, size: content.size, sha256: content.sha256) else { return }
        let before = present.count
        learn(recorded)
        if present.count != before {
            if data == nil { data = (try? FileDescriptor.open(partialPath, .readOnly)).map(SharedDescriptor.init) }
            condition.broadcast()
        }
    }
}

extension Range where Bound == Int64 {
    func clamped(to limits: Range<Int64>) -> Range<Int64> {
        let lower = Swift.min(Swift.max(lowerBound, limits.lowerBound), limits.upperBound)
        return lower..<Swift.max(lower, Swift.min(upperBound, limits.upperBound))
    }
}

/// An open descriptor closed when the last user lets go, so a fetch job still writing (or
/// a FUSE reply still splicing) can never see its descriptor closed, and its number reused,
/// under it.
public final class SharedDescriptor: @unchecked Sendable {
    public let descriptor: FileDescriptor
    init(_ descriptor: FileDescriptor) { self.descriptor = descriptor }
    deinit { descriptor.close() }
}

/// The sink of one fetch job: gathers the bytes of a transfer (which arrive in order, in
/// pieces of ~16 KiB) into writes of up to `bufferSize` to the partial file, and reports each
/// block of the job's span once every byte of it is in the file.
///
/// Writing each piece as it came meant 65 000 `pwrite`s per GiB, contending on the file's
/// inode lock with the other fetch threads.
final class BlockSink: ResumableSink, @unchecked Sendable {
    private let inner: FileSink
    private let span: Range<Int64>
    private let blockSize: Int64
    private let onBlock: (Range<Int64>, String, String?) throws -> Void
    private let writeLock: NSLock?
    private let lock = NSLock()
    private var written: Int64
    private var reported: Int64
    /// Bytes received but not yet in the file, starting at `pendingStart`.
    private var pending: [UInt8] = []
    private var pendingStart: Int64 = 0
    static let bufferSize = 1 << 20
    /// The current block's sha256 over the bytes as they went by, up to `digestedTo`
    /// (nil when they did not arrive as one in-order run: the fetcher then reads them back).
    private var blockDigest: SHA256Hasher?
    private var digestedTo: Int64
    /// The source delivering the bytes now.
    var source = ""

    /// - Parameter digestBlocks: compute each block's sha256 from the bytes in passing, and
    ///   hand it to `onBlock` (saves reading every verified chunk back from the file).
    /// - Parameter writeLock: held around each write into the file (shared by the sinks of one file).
    init(_ inner: FileSink, span: Range<Int64>, blockSize: Int64, digestBlocks: Bool = false, writeLock: NSLock? = nil,
         onBlock: @escaping (Range<Int64>, String, String?) throws -> Void) {
        self.inner = inner
        self.writeLock = writeLock
        self.span = span
        self.blockSize = blockSize
        self.onBlock = onBlock
        written = span.lowerBound
        reported = span.lowerBound
        digestedTo = span.lowerBound
        blockDigest = digestBlocks ? SHA256Hasher() : nil
    }

    var resumePosition: Int64 {
        lock.lock()
        defer { lock.unlock() }
        return reported
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        lock.lock()
        defer { lock.unlock() }
        // A piece that straddles a block boundary is taken one block's part at a time, so each
        // block's digest sees exactly its own bytes. (Pieces are not aligned to blocks: the
        // response headers shift them. Taken whole, nearly every chunk had to be read back.)
        // Without digests a piece is taken whole, as before.
        guard blockDigest != nil else { return try take(bytes, at: offset) }
        var start = 0
        repeat {
            let at = offset + Int64(start)
            let end = min(bytes.count, start + Int((at / blockSize + 1) * blockSize - at))
            try take(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), at: at)
            start = end
        } while start < bytes.count
    }

    /// Takes bytes that lie within one block.
    private func take(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        // Bytes before what is already reported belong to blocks that may be served: never overwrite them.
        let skip = max(0, min(Int64(bytes.count), reported - offset))
        if skip < Int64(bytes.count) {
            try buffer(UnsafeRawBufferPointer(rebasing: bytes[Int(skip)...]), at: offset + skip)
        }
        if offset <= written { written = max(written, offset + Int64(bytes.count)) }
        while reported < span.upperBound {
            let end = min(span.upperBound, (reported / blockSize + 1) * blockSize)
            guard written >= end else { break }
            try flush()   // a block is reported only once its bytes are in the file
            let digest = digestedTo == end ? blockDigest?.finalize().hex : nil
            try onBlock(reported..<end, source, digest)
            reported = end
            if blockDigest != nil {
                blockDigest = SHA256Hasher()
                digestedTo = end
            }
        }
    }

    private func buffer(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        if let hasher = blockDigest {
            if offset == reported && digestedTo != reported {   // the block starts over (another source)
                blockDigest = SHA256Hasher()
                digestedTo = reported
            }
            if offset == digestedTo {
                (blockDigest ?? hasher).update(bytes)
                digestedTo += Int64(bytes.count)
            } else {
                digestedTo = -1   // out of order: this block is read back instead
            }
        }
        let pendingEnd = pendingStart + Int64(pending.count)
        if !pending.isEmpty && offset != pendingEnd {
            if offset >= pendingStart && offset < pendingEnd {
                pending.removeLast(Int(pendingEnd - offset))   // another source resends from here
            } else {
                try flush()
            }
        }
        if pending.isEmpty {
            pendingStart = offset
            pending.reserveCapacity(Self.bufferSize)
        }
        pending.append(contentsOf: bytes)
        if pending.count >= Self.bufferSize { try flush() }
    }

    private func flush() throws {
        guard !pending.isEmpty else { return }
        writeLock?.lock()
        defer { writeLock?.unlock() }
        try pending.withUnsafeBytes { try inner.write($0, at: pendingStart) }
        pendingStart += Int64(pending.count)
        pending.removeAll(keepingCapacity: true)
    }
}
