import Foundation
import Synchronization
import WanCore
import WanSystem

/// One content's partial file in `.tmp/` (`<sha256>.part`, sparse, the content's size) and,
/// for the process that owns the fetch, its range map (`<sha256>.map`) with the sync policy.
///
/// It knows which file it opened (device and inode), so a fetcher can ask whether that file
/// is still the one at its path (``isCurrent``) before it trusts what it remembers about it:
/// GC, `ensure --force` or a person may have removed or replaced it in between.
///
/// Durability: a range is appended to the map only after its bytes were written (kill -9 can
/// never leave the map claiming bytes that are not in the file). The data is synced every
/// `persistBytes` or `persistInterval`, by one thread while the others keep going, so after a
/// power loss the map is at most that far ahead of the disk; the whole-file digest catches
/// what it then claims wrongly. A failed append or sync is an error for the fetch that hit it.
final class PartialFile: Sendable {
    struct Policy: Sendable {
        var persistBytes: Int64
        var persistInterval: Double
    }

    /// The open file (readers are served from it; jobs write into it).
    let file: SharedDescriptor
    let identity: FileIdentity
    /// Whether this process owns the fetch through it (writable, with the map).
    var isWritable: Bool { journal.withLock { $0.log != nil } }

    private let root: CacheRoot
    private let sha256: String
    private let policy: Policy

    private struct Journal {
        var log: RangeMapLog?
        var unsynced: Int64 = 0
        var lastSync = ContinuousClock.now
        var syncing = false
    }
    private let journal: Mutex<Journal>

    private init(file: SharedDescriptor, identity: FileIdentity, root: CacheRoot, sha256: String, policy: Policy, log: sending RangeMapLog?) {
        self.file = file
        self.identity = identity
        self.root = root
        self.sha256 = sha256
        self.policy = policy
        self.journal = Mutex(Journal(log: log))
    }

    /// Why an existing partial file cannot be used for this content.
    struct ForeignFile: CodedError {
        let path: String
        let found: Int64
        let expected: Int64
        var code: ErrorCode { .checksumFail }
        var description: String {
            "\(path) holds \(found) bytes but this manifest says the content is \(expected) bytes: another manifest names the same sha256 with another size, and at most one of them is right"
        }
    }

    /// Opens (creating when missing) the partial file of `content` for the process that owns
    /// its fetch, with its range map, and returns the ranges the map records for this very
    /// file. A symlink or other non-regular entry at either name is replaced, never followed.
    static func openForFetch(_ content: FileSpec, root: CacheRoot, policy: Policy) throws -> (PartialFile, RangeSet) {
        let tmp = try root.tmp()
        let name = CacheRoot.partialName(content.sha256)
        let fd = try tmp.createOrOpenRegular(name)
        do {
            let info = try fd.info()
            if info.size != content.size {
                // A fresh file is sized once; a file of another size belongs to another spec.
                guard info.size == 0 else { throw ForeignFile(path: tmp.path + "/" + name, found: info.size, expected: content.size) }
                try fd.truncate(to: content.size)
            }
            let (log, recorded) = try RangeMapLog.open(in: tmp, name: CacheRoot.mapName(content.sha256), size: content.size,
                                                       sha256: content.sha256, partial: info.identity)
            let partial = PartialFile(file: SharedDescriptor(fd), identity: info.identity, root: root, sha256: content.sha256,
                                      policy: policy, log: log)
            return (partial, recorded)
        } catch {
            fd.close()
            throw error
        }
    }

    /// Opens the partial file another process is fetching into, read-only, with the ranges
    /// its map records for that file; nil when there is none (or no map for it yet).
    static func openToFollow(_ content: FileSpec, root: CacheRoot, policy: Policy) -> (PartialFile, RangeSet)? {
        guard let tmp = try? root.tmp(create: false),
              let fd = try? tmp.openFile(CacheRoot.partialName(content.sha256), .readOnly) else { return nil }
        guard let info = try? fd.info(), info.size == content.size,
              let recorded = RangeMapLog.reload(in: tmp, name: CacheRoot.mapName(content.sha256), size: content.size,
                                                sha256: content.sha256, partial: info.identity) else {
            fd.close()
            return nil
        }
        return (PartialFile(file: SharedDescriptor(fd), identity: info.identity, root: root, sha256: content.sha256,
                            policy: policy, log: nil), recorded)
    }

    /// The identity of the partial file at `content`'s path now (nil: none).
    static func currentIdentity(_ sha256: String, root: CacheRoot) -> FileIdentity? {
        guard let tmp = try? root.tmp(create: false), let info = try? tmp.info(CacheRoot.partialName(sha256)),
              info.kind == .regular else { return nil }
        return info.identity
    }

    /// Whether this file is still the one at its path (not removed, not replaced).
    var isCurrent: Bool { Self.currentIdentity(sha256, root: root) == identity }

    /// Records that `range` is in the file (its bytes were written before); syncs the data
    /// (and compacts the map to `ranges`) when a sync is due. Does nothing for a follower.
    func record(_ range: Range<Int64>, ranges: @autoclosure () -> RangeSet) throws {
        let due = try journal.withLock { journal throws -> Bool in
            guard let log = journal.log else { return false }
            try log.append([range])
            journal.unsynced += Int64(range.count)
            let elapsed = ContinuousClock.now - journal.lastSync
            let due = !journal.syncing && (journal.unsynced >= policy.persistBytes || elapsed >= .seconds(policy.persistInterval))
            if due { journal.syncing = true }
            return due
        }
        if due { try sync(ranges()) }
    }

    /// Syncs what has arrived and compacts the map to `ranges` now (a job's end, idle, commit).
    /// When another thread is syncing already, that sync covers it.
    func persist(_ ranges: RangeSet) throws {
        let run = journal.withLock { journal -> Bool in
            guard journal.log != nil, !journal.syncing else { return false }
            journal.syncing = true
            return true
        }
        if run { try sync(ranges) }
    }

    /// fdatasync outside the lock (appends go on meanwhile), then compaction under it.
    private func sync(_ ranges: RangeSet) throws {
        journal.withLock { $0.unsynced = 0 }
        do {
            try file.descriptor.syncData()
            try journal.withLock { journal throws in
                try journal.log?.compactIfLarge(ranges)
                journal.lastSync = .now
                journal.syncing = false
            }
        } catch {
            journal.withLock { $0.syncing = false }
            throw error
        }
    }

    /// Lets go of the map (the fetch is handed to another process or finished).
    func closeMap() {
        journal.withLock { $0.log = nil }
    }

    /// Removes this file's map, and the file itself when it is still at its path.
    func removeFromDisk() throws {
        closeMap()
        guard let tmp = try? root.tmp(create: false) else { return }
        // A file at the path that is not this one has its own map: both stay.
        guard isCurrent else { return }
        try tmp.remove(CacheRoot.partialName(sha256))
        try tmp.remove(CacheRoot.mapName(sha256))
    }
}

/// An open descriptor closed when the last user lets go, so a fetch job still writing (or
/// a FUSE reply still splicing) can never see its descriptor closed, and its number reused,
/// under it.
public final class SharedDescriptor: Sendable {
    public let descriptor: FileDescriptor
    init(_ descriptor: FileDescriptor) { self.descriptor = descriptor }
    deinit { descriptor.close() }
}
