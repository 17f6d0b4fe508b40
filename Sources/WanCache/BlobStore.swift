import Foundation
import WanCore
import WanSystem

/// A verified blob, open: `.blobs/sha256/<aa>/<sha256>`.
public struct Blob: Sendable {
    public let file: SharedDescriptor
    public let identity: FileIdentity

    /// Whether this file was removed or replaced at its name since it was opened (GC,
    /// `ensure --force`, a quarantine): then it must not be served from any more.
    func isGone(_ sha256: String, root: CacheRoot) -> Bool {
        guard let links = try? file.descriptor.info().linkCount, links > 0 else { return true }
        guard let directory = try? root.blobDirectory(sha256: sha256, create: false),
              let info = try? directory.info(sha256) else { return true }
        return info.identity != identity
    }
}

/// The only code that gives content its name in `.blobs/` (``commit(_:content:digest:)``),
/// and that trusts a blob it finds there (``adopt(_:)``).
///
/// - A blob is named only after its whole-file sha256 was checked (the ``WholeFileDigest`` of
///   its bytes) and its size matches; the file is fsynced, renamed, and both directories are
///   fsynced, so a commit survives a power cut.
/// - A blob found on disk is adopted only if it is a regular file of the expected size. One
///   of another size is hashed: if its content matches its name the manifest entry is what is
///   wrong (the content is kept; the entry is CORRUPT), else the blob is quarantined.
public struct BlobStore: Sendable {
    public let root: CacheRoot

    public init(root: CacheRoot) {
        self.root = root
    }

    /// Why a content could not get or keep its name.
    public struct Mismatch: CodedError {
        public let path: String
        public let message: String
        public var code: ErrorCode { .checksumFail }
        public var description: String { "\(path): \(message)" }
    }

    /// Gives `partial` the content's name. `digest` is the whole-file sha256 of its bytes.
    /// Returns the blob (another process's, when one committed the same content first).
    /// - Throws: ``Mismatch`` when the digest or size does not match (nothing is renamed),
    ///   system errors (nothing is renamed, or the rename happened but a directory sync failed).
    func commit(_ partial: PartialFile, content: FileSpec, digest: String) throws -> Blob {
        guard digest == content.sha256 else {
            throw Mismatch(path: content.path, message: "sha256 of the bytes is \(digest), expected \(content.sha256)")
        }
        let info = try partial.file.descriptor.info()
        guard info.size == content.size, info.identity == partial.identity else {
            throw Mismatch(path: content.path, message: "the partial file holds \(info.size) bytes, expected \(content.size)")
        }
        guard partial.isCurrent else {
            throw SystemError(errno: ESTALE, operation: "commit (the partial file was removed or replaced while it was fetched)",
                              path: content.path)
        }
        try partial.file.descriptor.sync()
        try partial.file.descriptor.setPermissions(0o444)
        let tmp = try root.tmp()
        let directory = try root.blobDirectory(sha256: content.sha256)
        if let existing = try adopt(content) {
            try partial.removeFromDisk()   // the same verified content is there already
            return existing
        }
        partial.closeMap()
        try tmp.rename(CacheRoot.partialName(content.sha256), to: directory, as: content.sha256)
        try directory.sync()
        try tmp.remove(CacheRoot.mapName(content.sha256))
        try tmp.sync()
        return Blob(file: try reopen(directory, content.sha256, expecting: partial.identity), identity: partial.identity)
    }

    /// Commits content written to a temporary file `name` in `.tmp/` (an import), after its
    /// whole-file digest was checked against `content`.
    func commit(temporary name: String, descriptor: FileDescriptor, content: FileSpec, digest: String) throws {
        guard digest == content.sha256 else {
            throw Mismatch(path: content.path, message: "sha256 of the bytes is \(digest), expected \(content.sha256)")
        }
        let info = try descriptor.info()
        guard info.size == content.size else {
            throw Mismatch(path: content.path, message: "\(info.size) bytes, expected \(content.size)")
        }
        try descriptor.sync()
        try descriptor.setPermissions(0o444)
        let tmp = try root.tmp()
        let directory = try root.blobDirectory(sha256: content.sha256)
        try tmp.rename(name, to: directory, as: content.sha256)
        try directory.sync()
        try tmp.sync()
    }

    /// The blob of `content` when one is there and may be trusted; nil when there is none.
    /// A blob of the wrong size is never adopted (see the type's notes).
    /// - Throws: ``Mismatch`` when a blob of another size is this content after all (the
    ///   manifest entry's size is wrong).
    func adopt(_ content: FileSpec) throws -> Blob? {
        guard let directory = try? root.blobDirectory(sha256: content.sha256, create: false),
              let info = try directory.info(content.sha256) else { return nil }
        if info.kind == .regular && info.size == content.size {
            return Blob(file: try reopen(directory, content.sha256, expecting: info.identity), identity: info.identity)
        }
        if info.kind == .regular, let fd = try? directory.openFile(content.sha256, .readOnly) {
            defer { fd.close() }
            if let digest = try? WholeFileDigest.hash(fd), digest == content.sha256 {
                throw Mismatch(path: content.path, message: "the manifest says \(content.size) bytes, but the content with sha256 \(content.sha256) has \(info.size): the manifest entry is wrong")
            }
        }
        try root.quarantine(content.sha256, in: directory, as: "\(content.sha256).blob")
        return nil
    }

    private func reopen(_ directory: Directory, _ name: String, expecting identity: FileIdentity) throws -> SharedDescriptor {
        let fd = try directory.openFile(name, .readOnly)
        guard (try? fd.info().identity) == identity else {
            fd.close()
            throw SystemError(errno: ESTALE, operation: "open (the blob was replaced as it was opened)", path: directory.path + "/" + name)
        }
        return SharedDescriptor(fd)
    }
}

extension WholeFileDigest {
    /// The sha256 of everything in `fd`.
    static func hash(_ fd: FileDescriptor) throws -> String {
        let size = try fd.info().size
        let digest = WholeFileDigest(size: size)
        try digest.catchUp(from: fd, to: size)
        guard let hex = digest.finish() else { throw SystemError(errno: EIO, operation: "read (the file shrank while it was hashed)", path: nil) }
        return hex
    }
}
