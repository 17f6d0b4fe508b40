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
public final class CacheEngine: @unchecked Sendable {
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

        public init() {}

        public init(_ config: OrchestratorConfig) {
            jobSize = max(config.chunkSize, 1 << 20)
            connections = config.maxConnectionsPerSource
            downloadTimeout = config.downloadTimeout
        }
    }

    public let config: OrchestratorConfig
    public let registry: ModelRegistry
    public let resolver: ModelResolver
    public let locks: LockManager
    public let settings: Settings
    public let sources: SourceFactory
    public let scheduler: FetchScheduler
    /// Whole-file digests, at a lower CPU priority than fetching and serving.
    public let hashWorkers = HashWorkers()
    private let fetchers = Mutex<[String: FileFetcher]>([:])
    private let discardHandler = Mutex<(@Sendable (String) -> Void)?>(nil)

    /// Sets what to call (with a content sha256) when bytes of that content that may have been
    /// served are found bad and discarded; the mount drops the kernel's cached pages of it.
    public func onDiscardedContent(_ handler: @escaping @Sendable (String) -> Void) {
        discardHandler.withLock { $0 = handler }
    }
    private let stateStore = Mutex<StateStore?>(nil)
    /// Cancelled by `shutdown(cancellingTransfers: true)`: every transfer of this engine ends.
    private let transfers = CancellationToken()

    /// - Parameter limiter: caps the receive rate of every transfer of this engine together
    ///   (the sidecar gives each download its own); by default `bandwidth_limit`'s.
    public init(config: OrchestratorConfig, registry: ModelRegistry, settings: Settings? = nil,
                engine: HTTPEngine = .shared, limiter: BandwidthLimiter? = nil) throws {
        self.config = config
        self.registry = registry
        self.resolver = try config.resolver()
        self.locks = LockManager(resolver: resolver)
        self.settings = settings ?? Settings(config)
        self.sources = SourceFactory(config: config, manifestDirectory: registry.manifestDirectory, engine: engine, limiter: limiter)
        self.scheduler = FetchScheduler(workers: self.settings.connections, name: self.settings.threadName)
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

    /// The directory name of a spec's variant under `wan22/` (and in the mount).
    public func modelKey(_ spec: ModelSpec) -> String {
        ModelResolver.directoryName(modelID: spec.modelID, variant: spec.variant, defaultVariant: spec.defaultVariant)
    }

    // MARK: - Fetchers

    /// The process's fetcher for `file`'s content; a file shared by several models has one.
    public func fetcher(for file: FileSpec, of spec: ModelSpec) throws -> FileFetcher {
        if let existing = fetchers.withLock({ $0[file.sha256] }) { return existing }
        let reader = try sources.reader(for: spec)
        let state = try? self.state()
        return fetchers.withLock { table in
            if let existing = table[file.sha256] { return existing }
            // Once verified, the content is linked into the model that asked for it (the mount
            // fetches lazily; this is what makes the model directory and GC see it).
            let target = resolver.localDir(spec) + "/" + file.path
            let fetcher = FileFetcher(content: file, model: modelKey(spec), reader: reader, settings: settings, resolver: resolver,
                                      locks: locks, state: state, scheduler: scheduler, hashWorkers: hashWorkers, cancel: transfers,
                                      onCommit: { [weak self] blob in try? self?.link(blob: blob, to: target) },
                                      onDiscard: { [weak self] sha256 in self?.discardHandler.withLock { $0 }?(sha256) })
            table[file.sha256] = fetcher
            return fetcher
        }
    }

    /// Every fetcher of this process (for live status).
    public func liveFetchers() -> [FileFetcher] { fetchers.withLock { Array($0.values) } }

    /// The live fetcher for a content, if this process has one.
    public func liveFetcher(sha256: String) -> FileFetcher? { fetchers.withLock { $0[sha256] } }

    // MARK: - Status

    /// The state of one model variant from disk (links, blobs, partial maps, the state
    /// database) and from this process's live fetches.
    public func status(_ spec: ModelSpec) throws -> ModelStatus {
        let directory = resolver.localDir(spec)
        let state = try? self.state(create: false)
        let marks = (try? state?.fileStates()) ?? [:]
        var files: [FileStatus] = []
        for file in spec.files {
            let (fileState, present) = fileStatus(file, in: directory, marks: marks)
            files.append(FileStatus(path: file.path, size: file.size, sha256: file.sha256, optional: file.optional,
                                    state: fileState, bytesPresent: present))
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

    private func fileStatus(_ file: FileSpec, in directory: String, marks: [String: (state: ModelState, detail: String?)]) -> (ModelState, Int64) {
        if marks[file.sha256]?.state == .corrupt { return (.corrupt, 0) }
        if let link = try? FileSystem.info(directory + "/" + file.path), link.kind == .regular, link.size == file.size {
            return (.complete, file.size)
        }
        if let live = liveFetcher(sha256: file.sha256)?.snapshot {
            switch live.phase {
            case .complete: return (.partial, file.size)   // verified, not yet linked into the model
            case .corrupt: return (.corrupt, 0)
            case .verifying: return (.verifying, live.bytesPresent)
            case .partial: return (live.bytesPresent > 0 ? .partial : .notPresent, live.bytesPresent)
            }
        }
        if FileManager.default.fileExists(atPath: resolver.blobPath(sha256: file.sha256)) { return (.partial, file.size) }
        let map = resolver.tmpDir + "/" + file.sha256 + ".map"
        if let recorded = RangeMapLog.reload(path: map, size: file.size, sha256: file.sha256) {
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
            if FileManager.default.fileExists(atPath: resolver.blobPath(sha256: file.sha256)) { continue }
            let present = liveFetcher(sha256: file.sha256)?.snapshot.bytesPresent
                ?? RangeMapLog.reload(path: resolver.tmpDir + "/" + file.sha256 + ".map", size: file.size, sha256: file.sha256)?.count
                ?? 0
            needed += file.size - present
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
            let blob = try fetcher.requireComplete(timeout: settings.downloadTimeout, cancel: cancel) { _ in report() }
            try link(blob: blob, to: directory + "/" + file.path)
        }
        progress?(total, total)
        try? state()?.recordAccess(model: key)
        return directory
    }

    /// Whether `file` is already linked into the model directory with the right size.
    func isLinked(_ file: FileSpec, in directory: String) -> Bool {
        guard let info = try? FileSystem.info(directory + "/" + file.path) else { return false }
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

    /// Hard-links a blob at `path` (atomically replacing what is there).
    public func link(blob: String, to path: String) throws {
        if let existing = try FileSystem.info(path), let target = try FileSystem.info(blob),
           existing.inode == target.inode, existing.device == target.device { return }
        try FileSystem.createDirectories((path as NSString).deletingLastPathComponent)
        let temporary = path + ".wan-link-\(ProcessInfo.processInfo.processIdentifier)"
        try? FileSystem.unlink(temporary)
        try FileSystem.link(blob, to: temporary)
        try FileSystem.rename(temporary, to: path)
    }

    /// Removes a model's links, blobs and partial files so the next ensure fetches again.
    func discard(_ spec: ModelSpec) throws {
        let directory = resolver.localDir(spec)
        for file in spec.files {
            try? FileSystem.unlink(directory + "/" + file.path)
            try? FileSystem.unlink(resolver.blobPath(sha256: file.sha256))
            try? FileSystem.unlink(resolver.tmpDir + "/" + file.sha256 + ".part")
            try? FileSystem.unlink(resolver.tmpDir + "/" + file.sha256 + ".map")
            try? state()?.setFileState(nil, sha256: file.sha256)
            _ = fetchers.withLock { $0.removeValue(forKey: file.sha256) }
        }
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

    /// Removes the damaged content of `spec` (every link to it and its blob) so it is fetched again.
    public func quarantine(_ spec: ModelSpec, files: [String]) throws {
        let directory = resolver.localDir(spec)
        for file in spec.files where files.contains(file.path) {
            let quarantineDir = resolver.tmpDir + "/quarantine"
            try FileSystem.createDirectories(quarantineDir)
            try? FileSystem.rename(resolver.blobPath(sha256: file.sha256), to: quarantineDir + "/\(file.sha256).\(Int(Date().timeIntervalSince1970))")
            try? FileSystem.unlink(directory + "/" + file.path)
            // Other models hold their own hard link to the same damaged inode: drop those too.
            for other in registry.manifest.models {
                for variant in other.variants.isEmpty ? [nil] : other.variants.map(Optional.some) {
                    let narrowed = other.narrowed(to: variant)
                    for shared in narrowed.files where shared.sha256 == file.sha256 {
                        try? FileSystem.unlink(resolver.localDir(narrowed) + "/" + shared.path)
                    }
                }
            }
            try? state()?.setFileState(nil, sha256: file.sha256)
            _ = fetchers.withLock { $0.removeValue(forKey: file.sha256) }
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
