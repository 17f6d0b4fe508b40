import Foundation
import Synchronization
import WanCore
import WanSources
import WanSystem

/// The one place that writes MODELS_ROOT. The CLI, the mount and the sidecar all go
/// through it, so locking, verification and accounting live here.
///
/// It keeps one ``FileFetcher`` per content (sha256) in the process, links verified blobs
/// into `wan22/<model>/`, reports status from disk and from live fetches, and checks space
/// before downloading.
public final class CacheEngine: Sendable {
    /// Tunables, from the configuration.
    public struct Settings: Sendable {
        /// Fetch granularity for files without chunk digests.
        public var blockSize: Int64 = 4 << 20
        /// Bytes per range request (a run of blocks).
        public var jobSize: Int64 = 16 << 20
        /// Sync the partial file at least every this many bytes or `persistInterval` seconds.
        /// Syncing spreads the disk writes over the download, so the fsync before a commit is
        /// short: at 512 MiB / 5 s, `ensure` measured 0.71x curl -o FILE (1.02x at 64 MiB / 1 s).
        /// kill -9 loses nothing either way (the page cache survives it); after a power loss
        /// verification rejects what the map claims wrongly.
        public var persistBytes: Int64 = 64 << 20
        public var persistInterval: Double = 1
        public var verifyMode: VerifyMode = .lazy
        /// Parallel range requests (worker threads).
        public var connections = 8
        /// Seconds a whole file may take (`download_timeout`).
        public var downloadTimeout: Double = 3600
        /// Name prefix of the fetch worker threads.
        public var threadName = "wan-fetch"
        /// Seconds a content found bad at every source (a chunk, or the whole file) waits before
        /// the sources are tried again (`corrupt_retry_interval`): a repaired origin heals
        /// without a remount, and a broken one is not hammered.
        public var corruptCoolDown: Double = 60
        /// Seconds without a byte after which a fetch counts as stuck and an extra worker may
        /// take the queued jobs (``FetchScheduler/stallGrace``).
        public var stallGrace: Double = 2

        public init() {}

        public init(_ config: OrchestratorConfig) {
            jobSize = max(config.chunkSize, 1 << 20)
            connections = config.maxConnectionsPerSource
            downloadTimeout = config.downloadTimeout
            corruptCoolDown = config.corruptRetryInterval
        }
    }

    public let config: OrchestratorConfig
    /// The manifest: the one given, or the one a mount reloaded (``replaceRegistry(_:)``).
    public var registry: ModelRegistry { currentRegistry.withLock { $0 } }
    private let currentRegistry: Mutex<ModelRegistry>

    /// Uses `registry` from now on (a mount reloaded its manifest): what the engine looks up in
    /// the manifest, such as the models whose links a quarantine removes, follows it. Sources
    /// stay those of the manifest directory given at creation.
    public func replaceRegistry(_ registry: ModelRegistry) {
        currentRegistry.withLock { $0 = registry }
    }
    public let resolver: ModelResolver
    /// MODELS_ROOT's directories, never through a symlink below the root.
    public let root: CacheRoot
    public let locks: LockManager
    public let settings: Settings
    public let sources: SourceFactory
    public let scheduler: FetchScheduler
    /// Whole-file digests, at a lower CPU priority than fetching and serving.
    public let hashWorkers: HashWorkers
    private let fetchers = Mutex<[String: FileFetcher]>([:])
    private let discardHandler = Mutex<(@Sendable (String) -> Void)?>(nil)

    /// Sets what to call (with a content sha256) when bytes of that content that may have been
    /// served are found bad and discarded; the mount drops the kernel's cached pages of it.
    public func onDiscardedContent(_ handler: @escaping @Sendable (String) -> Void) {
        discardHandler.withLock { $0 = handler }
    }
    private let stateStore = Mutex<StateStore?>(nil)
    /// Cancelled by `shutdown(cancellingTransfers: true)`: every transfer of this engine ends.
    let transfers = CancellationToken()

    /// - Parameter limiter: caps the receive rate of every transfer of this engine together
    ///   (the sidecar gives each download its own); by default `bandwidth_limit`'s.
    public init(config: OrchestratorConfig, registry: ModelRegistry, settings: Settings? = nil,
                engine: HTTPEngine = .shared, limiter: BandwidthLimiter? = nil) throws {
        self.config = config
        self.currentRegistry = Mutex(registry)
        self.resolver = try config.resolver()
        self.root = CacheRoot(resolver: resolver)
        self.locks = LockManager(resolver: resolver)
        self.settings = settings ?? Settings(config)
        self.sources = SourceFactory(config: config, manifestDirectory: registry.manifestDirectory, engine: engine, limiter: limiter)
        self.scheduler = FetchScheduler(workers: self.settings.connections, name: self.settings.threadName,
                                        stallGrace: self.settings.stallGrace)
        // Named after the fetch threads ("wan-fetch" -> "wan-hash"), so a test can single out one engine's threads.
        let name = self.settings.threadName
        let scheduler = self.scheduler
        self.hashWorkers = HashWorkers(name: name.contains("fetch") ? name.replacingOccurrences(of: "fetch", with: "hash") : name + "-h",
                                       busy: { scheduler.isMoving })
    }

    deinit {
        scheduler.stop()
        hashWorkers.stop()
    }

    /// Stops fetching: partial files are synced and their maps recorded, workers exit once
    /// their current request ends (at once with `cancellingTransfers`). Everything fetched
    /// so far is kept for the next run.
    public func shutdown(cancellingTransfers: Bool = false) {
        if cancellingTransfers { transfers.cancel() }
        scheduler.stop(discardingQueued: true)
        for fetcher in liveFetchers() { fetcher.suspend() }
    }

    /// Configuration and manifest from the environment and an optional config file (`from_config`).
    public static func fromConfig(configPath: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> CacheEngine {
        let config = try OrchestratorConfig.load(environment: environment, configPath: configPath)
        return try CacheEngine(config: config, registry: try ModelRegistry(manifestPath: config.manifestPath))
    }

    /// The state database, created on first use. Read-only callers pass `create: false` and
    /// get nil when MODELS_ROOT has none yet.
    public func state(create: Bool = true) throws -> StateStore? {
        try stateStore.withLock { store in
            if let store { return store }
            guard create || FileManager.default.fileExists(atPath: resolver.statePath) else { return nil }
            let opened = try StateStore(resolver: resolver)
            store = opened
            return opened
        }
    }

    /// Does now what the first fetch would otherwise wait for: opens (creating) the state
    /// database, makes the directory of partial files, starts the fetch and hash threads.
    /// A mount calls it before it answers, so nothing of this stands between a reader's first
    /// read and its bytes (the state database alone took 12 ms to create on a first open).
    public func warmUp() throws {
        scheduler.start()
        hashWorkers.start()
        _ = try state()
        _ = try root.tmp()
    }

    /// The directory name of a spec's variant under `wan22/` (and in the mount).
    public func modelKey(_ spec: ModelSpec) -> String {
        ModelResolver.directoryName(modelID: spec.modelID, variant: spec.variant, defaultVariant: spec.defaultVariant)
    }

    // MARK: - Fetchers

    /// The key of a content: its sha256 and size. (Two manifests may name one sha256 with two
    /// sizes; at most one is right, and the wrong one must not disturb the other.)
    static func contentKey(_ file: FileSpec) -> String { "\(file.sha256)/\(file.size)" }

    /// The process's fetcher for `file`'s content; a file shared by several models has one.
    public func fetcher(for file: FileSpec, of spec: ModelSpec) throws -> FileFetcher {
        let key = Self.contentKey(file)
        if let existing = fetchers.withLock({ $0[key] }) { return existing }
        let reader = try sources.reader(for: spec)
        let state = try? self.state()
        return fetchers.withLock { table in
            if let existing = table[key] { return existing }
            // Once verified, the content is linked into the model that asked for it (the mount
            // fetches lazily; this is what makes the model directory and GC see it).
            let model = modelKey(spec), path = file.path
            let fetcher = FileFetcher(content: file, model: model, reader: reader, settings: settings, root: root,
                                      locks: locks, state: state, scheduler: scheduler, hashWorkers: hashWorkers, cancel: transfers,
                                      onCommit: { [weak self] _ in try? self?.link(file, into: model, at: path) },
                                      onDiscard: { [weak self] sha256 in self?.discardHandler.withLock { $0 }?(sha256) })
            table[key] = fetcher
            return fetcher
        }
    }

    /// Every fetcher of this process (for live status).
    public func liveFetchers() -> [FileFetcher] { fetchers.withLock { Array($0.values) } }

    /// The live fetcher for a content, if this process has one.
    public func liveFetcher(_ file: FileSpec) -> FileFetcher? { fetchers.withLock { $0[Self.contentKey(file)] } }

    /// Complete fetchers let go of blobs that were removed or replaced on disk (GC, another
    /// process's `ensure --force` or `verify --fix`), so their space is freed and the next read
    /// fetches again. The mount calls it every few seconds. Returns how many were let go of.
    @discardableResult
    public func releaseRemovedBlobs() -> Int {
        liveFetchers().filter { $0.releaseBlobIfRemoved() }.count
    }

    // MARK: - Status

    /// The state of one model variant from disk (links, blobs, partial maps, the state
    /// database) and from this process's live fetches.
    public func status(_ spec: ModelSpec) throws -> ModelStatus {
        let directory = resolver.localDir(spec)
        let state = try? self.state(create: false)
        let marks = (try? state?.fileMarks()) ?? [:]
        var files: [FileStatus] = []
        for file in spec.files {
            let (fileState, present) = fileStatus(file, in: directory, marks: marks)
            files.append(FileStatus(path: file.path, size: file.size, sha256: file.sha256, optional: file.optional,
                                    state: fileState, bytesPresent: present,
                                    detail: fileState == .corrupt ? marks[file.sha256]?.detail ?? liveFetcher(file)?.snapshot.error : nil))
        }
        let required = files.filter { !$0.optional }
        let lastVerified = try? state?.lastVerified(model: modelKey(spec))
        return ModelStatus(
            modelID: spec.modelID, variant: spec.variant, state: ModelStatus.combine(files), bytesTotal: spec.totalSize,
            bytesPresent: files.reduce(0) { $0 + $1.bytesPresent },
            bytesNeeded: required.reduce(0) { $0 + ($1.size - $1.bytesPresent) },
            missingFiles: required.filter { $0.state != .complete }.map(\.path),
            lastVerified: lastVerified ?? nil, files: files)
    }

    /// Whether a blob of `file`'s content and size is in `.blobs/`.
    public func blobExists(_ file: FileSpec) -> Bool {
        guard let info = try? root.blobDirectory(sha256: file.sha256, create: false).info(file.sha256) else { return false }
        return info.kind == .regular && info.size == file.size
    }

    /// What the range map of `file`'s partial download records (for status and estimates).
    func recordedRanges(_ file: FileSpec) -> RangeSet? {
        guard let tmp = try? root.tmp(create: false) else { return nil }
        return RangeMapLog.reload(in: tmp, name: CacheRoot.mapName(file.sha256), size: file.size, sha256: file.sha256, partial: nil)
    }

    private func fileStatus(_ file: FileSpec, in directory: String, marks: [String: StateStore.FileMark]) -> (ModelState, Int64) {
        if let mark = marks[file.sha256], mark.state == .corrupt, mark.size == nil || mark.size == file.size { return (.corrupt, 0) }
        if let link = try? FileSystem.info(directory + "/" + file.path), link.kind == .regular, link.size == file.size {
            return (.complete, file.size)
        }
        if let live = liveFetcher(file)?.snapshot {
            switch live.phase {
            case .complete: return (.partial, file.size)   // verified, not yet linked into the model
            case .corrupt: return (.corrupt, 0)
            case .verifying: return (.verifying, live.bytesPresent)
            case .partial: return (live.bytesPresent > 0 ? .partial : .notPresent, live.bytesPresent)
            }
        }
        if blobExists(file) { return (.partial, file.size) }
        if let recorded = recordedRanges(file) {
            let present = recorded.count
            if present == file.size && file.size > 0 { return (.verifying, present) }
            return (present > 0 ? .partial : .notPresent, present)
        }
        return (.notPresent, 0)
    }

    /// Bytes still to download for `spec`, counting content already in blobs or partial
    /// files (`estimate_download_size`), each distinct content once.
    public func estimateDownloadSize(_ spec: ModelSpec) throws -> Int64 {
        var seen = Set<String>()
        var needed: Int64 = 0
        for file in spec.files where seen.insert(file.sha256).inserted {
            if blobExists(file) { continue }
            let present = liveFetcher(file)?.snapshot.bytesPresent ?? recordedRanges(file)?.count ?? 0
            needed = needed.addingClamped(max(0, file.size - present))
        }
        return needed
    }

    // MARK: - Ensure

    /// Makes every file of `spec` complete, verified and linked under `wan22/`, fetching
    /// what is missing; returns the model directory.
    ///
    /// - Parameters:
    ///   - force: discard what is cached for this model and fetch it again.
    ///   - progress: called with (bytes present, bytes total) as the download advances.
    /// - Throws: ``OrchestratorError/insufficientSpace(path:required:available:)`` before any
    ///   download when the disk cannot hold what is missing; source and checksum errors.
    @discardableResult
    public func ensure(_ spec: ModelSpec, force: Bool = false, cancel: CancellationToken = .none,
                       progress: (@Sendable (Int64, Int64) -> Void)? = nil) throws -> String {
        let key = modelKey(spec)
        let inUse = try locks.acquire(LockManager.modelLockName(key), mode: .shared, timeout: 60)
        defer { inUse.release() }
        let directory = resolver.localDir(spec)
        if force { try discard(spec) }

        let missing = spec.files.filter { !isLinked($0, in: directory) }
        let needed = try estimateDownloadSize(spec.with(variant: spec.variant, files: missing))
        try checkSpace(needed: needed)

        let total = spec.totalSize
        let alreadyLinked = total - missing.reduce(0) { $0 + $1.size }
        let fetchers = try missing.map { try fetcher(for: $0, of: spec) }
        for fetcher in fetchers { fetcher.prefetch(0..<fetcher.content.size, priority: .background) }

        // Progress counts every file's bytes present (files further down the list may be
        // partly there already, from an earlier run or their own background jobs).
        let report = { progress?(alreadyLinked + fetchers.reduce(0) { $0 + $1.snapshot.bytesPresent }, total) }
        for (file, fetcher) in zip(missing, fetchers) {
            _ = try fetcher.requireComplete(timeout: settings.downloadTimeout, cancel: cancel) { _ in report() }
            try link(file, into: key, at: file.path)
        }
        progress?(total, total)
        try? state()?.recordAccess(model: key)
        return directory
    }

    /// Whether `file` is already linked into the model directory with the right size (and is
    /// a regular file there, not a symlink).
    func isLinked(_ file: FileSpec, in directory: String) -> Bool {
        guard let info = try? FileSystem.info(directory + "/" + file.path, followSymlinks: false) else { return false }
        return info.kind == .regular && info.size == file.size
    }

    /// Fails fast with NO_SPACE when MODELS_ROOT's filesystem cannot hold `needed` more bytes.
    public func checkSpace(needed: Int64) throws {
        guard needed > 0 else { return }
        try FileSystem.createDirectories(resolver.modelsRoot)
        let space = try FileSystem.space(at: resolver.modelsRoot)
        if space.availableBytes < needed {
            throw OrchestratorError.insufficientSpace(path: resolver.modelsRoot, required: needed, available: space.availableBytes)
        }
    }

    /// Hard-links the blob of `file` at `wan22/<model>/<path>` (atomically replacing what is
    /// there), never through a symlink, and makes the link durable (fsync of the directory).
    public func link(_ file: FileSpec, into model: String, at path: String) throws {
        let blobs = try root.blobDirectory(sha256: file.sha256, create: false)
        guard let blob = try blobs.info(file.sha256), blob.kind == .regular, blob.size == file.size else {
            throw SystemError(errno: ENOENT, operation: "link (no verified blob of this size)", path: resolver.blobPath(sha256: file.sha256))
        }
        let (parent, name) = PathSplit.split(path)
        let directory = try root.modelDirectory(model, sub: parent)
        if let existing = try directory.info(name), existing.identity == blob.identity { return }
        // Unique per thread and process: two threads linking the same path never collide.
        let temporary = ".\(name).wan-link-\(CacheRoot.uniqueSuffix())"
        try blobs.link(file.sha256, to: directory, as: temporary)
        defer {
            // rename(2) of one hard link onto another of the same file does nothing and leaves
            // the temporary name (another thread linked the same file first): remove it.
            _ = try? directory.remove(temporary)
        }
        try directory.rename(temporary, to: directory, as: name)
        try directory.sync()
    }

    /// Removes a model's links, blobs and partial files so the next ensure fetches again. A
    /// content's blob and partial file are removed under its file lock; a partial file another
    /// process is fetching into right now is left to it (it is verified before its commit).
    func discard(_ spec: ModelSpec) throws {
        let key = modelKey(spec)
        for file in spec.files {
            let parent = PathSplit.parent(file.path)
            if let directory = try? root.modelDirectory(key, sub: parent, create: false) {
                try directory.remove(PathSplit.name(file.path))
            }
            try withFileLock(file.sha256, timeout: 10) { held in
                if let blobs = try? root.blobDirectory(sha256: file.sha256, create: false) { try blobs.remove(file.sha256) }
                guard held, let tmp = try? root.tmp(create: false) else { return }
                try tmp.remove(CacheRoot.partialName(file.sha256))
                try tmp.remove(CacheRoot.mapName(file.sha256))
            }
            try? state()?.setFileState(nil, sha256: file.sha256)
            _ = fetchers.withLock { $0.removeValue(forKey: Self.contentKey(file)) }
        }
    }

    /// Runs `body` holding `sha256`'s file lock when it can be had within `timeout` seconds
    /// (`held` true); else without it (`held` false: another process owns the fetch).
    func withFileLock<T>(_ sha256: String, timeout: Double, _ body: (_ held: Bool) throws -> T) throws -> T {
        let lock: LockManager.Lock?
        do {
            lock = try locks.acquire(LockManager.fileLockName(sha256), timeout: timeout)
        } catch let error as OrchestratorError where error.code == .lockTimeout {
            lock = nil
        }
        defer { lock?.release() }
        return try body(lock != nil)
    }

    // MARK: - Verify

    /// Re-hashes every file of the model on disk (`verify_integrity`) and records the results.
    public func verify(_ spec: ModelSpec) throws -> VerificationResult {
        let key = modelKey(spec)
        let inUse = try locks.acquire(LockManager.modelLockName(key), mode: .shared, timeout: 60)
        defer { inUse.release() }
        let directory = resolver.localDir(spec)
        var result = VerificationResult()
        let state = try? self.state()
        for file in spec.files {
            let path = directory + "/" + file.path
            guard let info = try FileSystem.info(path), info.kind == .regular else {
                if !file.optional {
                    result.missingFiles.append(file.path)
                    result.errors.append("\(file.path): not present")
                }
                continue
            }
            let actual = info.size == file.size ? try SHA256Hasher.hash(fileAt: path).hex : "size \(info.size)"
            let ok = actual == file.sha256
            if ok {
                result.verifiedFiles.append(file.path)
            } else {
                result.failedFiles.append(file.path)
                result.errors.append(OrchestratorError.checksumMismatch(path: file.path, expected: file.sha256, actual: actual).description)
            }
            try? state?.recordVerification(model: key, path: file.path, sha256: file.sha256, ok: ok,
                                           error: ok ? nil : "expected \(file.sha256), got \(actual)")
            try? state?.setFileState(ok ? nil : .corrupt, sha256: file.sha256, detail: ok ? nil : "verify: got \(actual)")
        }
        result.verified = result.failedFiles.isEmpty && result.missingFiles.isEmpty
        return result
    }

    /// Removes the damaged content of `spec` (every link to it and its blob) so it is fetched
    /// again. The blob is moved to the quarantine under its file lock.
    public func quarantine(_ spec: ModelSpec, files: [String]) throws {
        for file in spec.files where files.contains(file.path) {
            try withFileLock(file.sha256, timeout: 10) { _ in
                if let blobs = try? root.blobDirectory(sha256: file.sha256, create: false) {
                    try root.quarantine(file.sha256, in: blobs, as: file.sha256)
                }
            }
            // Every model's hard link to the same damaged inode goes too.
            for other in registry.manifest.models {
                for variant in other.variants.isEmpty ? [nil] : other.variants.map(Optional.some) {
                    let narrowed = other.narrowed(to: variant)
                    for shared in narrowed.files where shared.sha256 == file.sha256 {
                        let parent = PathSplit.parent(shared.path)
                        if let directory = try? root.modelDirectory(modelKey(narrowed), sub: parent, create: false) {
                            try directory.remove(PathSplit.name(shared.path))
                        }
                    }
                }
            }
            try? state()?.setFileState(nil, sha256: file.sha256)
            _ = fetchers.withLock { $0.removeValue(forKey: Self.contentKey(file)) }
        }
    }
}

/// The outcome of re-hashing a model (seed 000's `VerificationResult`).
public struct VerificationResult: Sendable, Equatable, Codable {
    public var verified = false
    public var partialVerification = false
    public var verifiedFiles: [String] = []
    public var failedFiles: [String] = []
    public var missingFiles: [String] = []
    public var errors: [String] = []

    public init() {}

    enum CodingKeys: String, CodingKey {
        case verified
        case partialVerification = "partial_verification"
        case verifiedFiles = "verified_files"
        case failedFiles = "failed_files"
        case missingFiles = "missing_files"
        case errors
    }
}
