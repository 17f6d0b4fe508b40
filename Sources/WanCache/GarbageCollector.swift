import Foundation
import WanCore
import WanSystem

/// What a collection did or would do (seed 000's `GCResult`).
public struct GCResult: Sendable, Equatable, Codable {
    public var bytesReclaimed: Int64 = 0
    public var bytesReclaimable: Int64 = 0
    public var modelsRemoved: [String] = []
    public var modelsPreserved: [String] = []
    public var errors: [String] = []
    public var dryRun = false
    /// Why each preserved model was kept, and why each removed model was chosen.
    public var reasons: [String: String] = [:]

    public init() {}

    enum CodingKeys: String, CodingKey {
        case bytesReclaimed = "bytes_reclaimed"
        case bytesReclaimable = "bytes_reclaimable"
        case modelsRemoved = "models_removed"
        case modelsPreserved = "models_preserved"
        case errors
        case dryRun = "dry_run"
        case reasons
    }
}

/// Frees space under MODELS_ROOT (seed 000/001's `GarbageCollector`).
///
/// - A model variant (a directory under `wan22/`) is a candidate unless it is pinned or in
///   use (someone holds its model lock: an ensure, a verify, files open through the mount).
/// - Candidates idle longer than `maxModelAge` are removed.
/// - While the cache is larger than `maxTotalSize`, candidates are removed least recently
///   used first (largest first with `aggressive`, which ignores access times).
/// - A blob is deleted only when no model directory links it any more. Blobs no model links
///   and quarantined files are always removed; `aggressive` also removes abandoned partial
///   downloads (those no process is fetching).
public struct GarbageCollector: Sendable {
    public let engine: CacheEngine
    public var maxTotalSize: Int64?
    /// Seconds.
    public var maxModelAge: Double?
    /// When set, only these models (directory names) are removed, whatever the limits say;
    /// pinned and in-use ones are still kept.
    public var only: Set<String>?

    public init(engine: CacheEngine, maxTotalSize: Int64? = nil, maxModelAge: Double? = nil) {
        self.engine = engine
        self.maxTotalSize = maxTotalSize ?? engine.config.maxTotalSize
        self.maxModelAge = maxModelAge ?? engine.config.maxModelAge
    }

    private var resolver: ModelResolver { engine.resolver }

    public func pin(_ model: String) throws { try engine.state()?.setPinned(true, model: model) }
    public func unpin(_ model: String) throws { try engine.state()?.setPinned(false, model: model) }

    struct Candidate {
        let name: String
        let files: [(path: String, inode: UInt64, size: Int64)]
        let lastAccess: Date
    }

    /// Why a collection removed nothing: it cannot know what it must keep.
    public struct Refused: CodedError {
        public let reason: String
        public var code: ErrorCode { .ioError }
        public var description: String { "garbage collection removed nothing: \(reason)" }
    }

    public func collect(dryRun: Bool = false, aggressive: Bool = false, now: Date = Date()) throws -> GCResult {
        var result = GCResult()
        result.dryRun = dryRun
        // Pins decide what must stay: a collection that cannot read them guesses nothing.
        let pins: [StateStore.ModelUsage]
        do {
            pins = try engine.state()?.allUsage() ?? []
        } catch {
            throw Refused(reason: "the state database (\(engine.resolver.statePath)) cannot be read, so the pinned models are unknown: \(error)")
        }
        let usage = Dictionary(pins.map { ($0.model, $0) }, uniquingKeysWith: { a, _ in a })

        // Every model directory, the inodes it links, and who else links them.
        var models: [Candidate] = []
        var owners: [UInt64: Int] = [:]
        var sizes: [UInt64: Int64] = [:]
        var blobByInode: [UInt64: String] = [:]
        for (path, info) in try DiskUsage.regularFiles(under: resolver.blobsDir) { blobByInode[info.inode] = path }
        for name in DiskUsage.subdirectories(of: resolver.modelsDir) {
            let root = resolver.modelsDir + "/" + name
            var files: [(String, UInt64, Int64)] = []
            for (path, info) in try DiskUsage.regularFiles(under: root) {
                files.append((path, info.inode, info.allocatedBytes))
                owners[info.inode, default: 0] += 1
                sizes[info.inode] = info.allocatedBytes
            }
            let modified = (try? FileSystem.info(root))??.modified ?? 0
            let last = usage[name]?.lastAccess ?? Date(timeIntervalSince1970: modified)
            models.append(Candidate(name: name, files: files, lastAccess: last))
        }
        // Blobs no model links are removed below whatever the limits say, so they do not count
        // toward the size the models must fit in.
        var total = sizes.values.reduce(0, +)

        // Garbage that belongs to nobody.
        for garbage in try unlinkedBlobs() + garbageInTmp(aggressive: aggressive) {
            if dryRun {
                result.bytesReclaimable += garbage.bytes
                continue
            }
            do {
                if try garbage.remove() {
                    result.bytesReclaimable += garbage.bytes
                    result.bytesReclaimed += garbage.bytes
                }
            } catch {
                result.errors.append("\(garbage.path): \(error)")
            }
        }

        // Which models may go, and in what order.
        var removable: [Candidate] = []
        for model in models where only?.contains(model.name) ?? true {
            if usage[model.name]?.pinned == true {
                result.modelsPreserved.append(model.name)
                result.reasons[model.name] = "pinned"
            } else if engine.locks.isModelLocked(model.name) {
                result.modelsPreserved.append(model.name)
                result.reasons[model.name] = "in use"
            } else {
                removable.append(model)
            }
        }
        removable.sort { aggressive ? freed($0, owners, sizes) > freed($1, owners, sizes) : $0.lastAccess < $1.lastAccess }

        for model in removable {
            let idle = now.timeIntervalSince(model.lastAccess)
            var reason: String?
            if only != nil {
                reason = "asked for by name"
            } else if let maxModelAge, idle > maxModelAge {
                reason = "idle \(Self.days(idle)) days (max age \(Self.days(maxModelAge)) days)"
            } else if let maxTotalSize, total > maxTotalSize {
                reason = "cache \(ByteSize.format(total)) over max size \(ByteSize.format(maxTotalSize))"
                    + (aggressive ? " (largest first)" : " (least recently used)")
            }
            guard let reason else {
                result.modelsPreserved.append(model.name)
                result.reasons[model.name] = "within limits"
                continue
            }
            let bytes = freed(model, owners, sizes)
            result.bytesReclaimable += bytes
            result.reasons[model.name] = reason
            total -= bytes
            for file in model.files { owners[file.inode, default: 1] -= 1 }
            if dryRun {
                result.modelsRemoved.append(model.name)
                continue
            }
            do {
                try remove(model, blobs: model.files.compactMap { blobByInode[$0.inode] })
                result.bytesReclaimed += bytes
                result.modelsRemoved.append(model.name)
            } catch {
                result.errors.append("\(model.name): \(error)")
                result.modelsPreserved.append(model.name)
            }
        }
        result.modelsPreserved.sort()
        return result
    }

    /// Whole days in `seconds`, for messages (any number, never a trap).
    static func days(_ seconds: Double) -> Int {
        let days = (seconds / 86400).rounded(.down)
        return days.isFinite ? Int(max(-1e15, min(days, 1e15))) : 0
    }

    /// Bytes removing `model` frees: the inodes only it links.
    private func freed(_ model: Candidate, _ owners: [UInt64: Int], _ sizes: [UInt64: Int64]) -> Int64 {
        Set(model.files.filter { owners[$0.inode] == 1 }.map(\.inode)).reduce(0) { $0 + (sizes[$1] ?? 0) }
    }

    /// Deletes a model directory under its exclusive lock (never following a symlink in it),
    /// then every blob it leaves unlinked.
    private func remove(_ model: Candidate, blobs: [String]) throws {
        guard let lock = try engine.locks.tryAcquire(LockManager.modelLockName(model.name)) else {
            throw OrchestratorError.lockTimeout(resource: model.name, timeout: 0)
        }
        defer { lock.release() }
        try engine.root.root(create: false).subdirectory("wan22").removeTree(model.name)
        for blob in blobs {
            _ = try? removeBlob((blob as NSString).lastPathComponent)
        }
        try? engine.state()?.forget(model: model.name)
    }

    /// One thing GC may delete, and how.
    struct Garbage {
        let path: String
        let bytes: Int64
        /// Deletes it; false when it turned out to be in use (or gone) after all.
        let remove: () throws -> Bool
    }

    /// Removes the blob `sha256` if no model links it, under its file lock (so no commit or
    /// fetch of that content runs meanwhile).
    private func removeBlob(_ sha256: String) throws -> Bool {
        guard Hex.isSHA256(sha256), let lock = try engine.locks.tryAcquire(LockManager.fileLockName(sha256)) else { return false }
        defer { lock.release() }
        let directory = try engine.root.blobDirectory(sha256: sha256, create: false)
        guard let info = try directory.info(sha256), info.kind != .regular || info.linkCount == 1 else { return false }
        return try directory.remove(sha256)
    }

    /// Blobs no model directory links (link count 1).
    private func unlinkedBlobs() throws -> [Garbage] {
        try DiskUsage.regularFiles(under: resolver.blobsDir).filter { $0.1.linkCount == 1 }.map { path, info in
            Garbage(path: path, bytes: info.allocatedBytes) { try removeBlob((path as NSString).lastPathComponent) }
        }
    }

    /// Quarantined files always; with `aggressive`, partial downloads no process is fetching:
    /// each removed under its file lock, taken without waiting (a fetch that holds it keeps
    /// its file; one that let go of it notices the file is gone and starts over).
    private func garbageInTmp(aggressive: Bool) throws -> [Garbage] {
        var garbage = try DiskUsage.regularFiles(under: resolver.tmpDir + "/quarantine").map { path, info in
            Garbage(path: path, bytes: info.allocatedBytes) {
                try engine.root.quarantine().remove((path as NSString).lastPathComponent)
            }
        }
        guard aggressive else { return garbage }
        for (path, info) in try DiskUsage.regularFiles(under: resolver.tmpDir) where !path.contains("/quarantine/") {
            let name = (path as NSString).lastPathComponent
            let sha = String(name.prefix(64))
            guard Hex.isSHA256(sha), PathSplit.parent(path) == resolver.tmpDir else { continue }
            garbage.append(Garbage(path: path, bytes: info.allocatedBytes) {
                guard let lock = try engine.locks.tryAcquire(LockManager.fileLockName(sha)) else { return false }
                defer { lock.release() }
                return try engine.root.tmp(create: false).remove(name)
            })
        }
        return garbage
    }
}
