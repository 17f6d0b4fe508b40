import Foundation
import WanCore
import WanSystem

/// MODELS_ROOT's directories, opened so that no symlink below the root is ever followed
/// (`.tmp`, `.locks`, `.blobs`, `wan22` and everything in them): each is walked one
/// component at a time from the root with `O_NOFOLLOW`, and files are created, renamed,
/// linked and removed relative to those descriptors. Directories are opened afresh for each
/// operation, so what another process renamed or replaced is seen as it is now.
///
/// Durable steps go through here too: ``sync(_:)`` makes a directory's new names survive a
/// power cut.
public struct CacheRoot: Sendable {
    public let resolver: ModelResolver

    public init(resolver: ModelResolver) {
        self.resolver = resolver
    }

    /// MODELS_ROOT itself (a symlink here is followed: it is the root the user named).
    public func root(create: Bool = true) throws(SystemError) -> Directory {
        try Directory.open(resolver.modelsRoot, create: create)
    }

    /// `.tmp/`: partial files and their range maps.
    public func tmp(create: Bool = true) throws(SystemError) -> Directory {
        try root(create: create).subdirectory(".tmp", create: create)
    }

    /// `.tmp/quarantine/`: content found bad, kept aside for a look (GC removes it).
    public func quarantine() throws(SystemError) -> Directory {
        try root().subdirectory(".tmp/quarantine", create: true)
    }

    /// `.blobs/sha256/<aa>/`, the directory of one content's blob.
    public func blobDirectory(sha256: String, create: Bool = true) throws(SystemError) -> Directory {
        try root(create: create).subdirectory(".blobs/sha256/" + String(sha256.prefix(2)), create: create)
    }

    /// `wan22/<model>/<sub>` (sub may be empty or nested: `unet`, `a/b`).
    public func modelDirectory(_ model: String, sub: String = "", create: Bool = true) throws(SystemError) -> Directory {
        try root(create: create).subdirectory("wan22/" + model + (sub.isEmpty ? "" : "/" + sub), create: create)
    }

    static func partialName(_ sha256: String) -> String { sha256 + ".part" }
    static func mapName(_ sha256: String) -> String { sha256 + ".map" }

    /// Moves `name` out of `directory` into the quarantine, under a name that says what and
    /// when; false when it was already gone.
    @discardableResult
    public func quarantine(_ name: String, in directory: Directory, as label: String) throws(SystemError) -> Bool {
        guard try directory.info(name) != nil else { return false }
        let target = try quarantine()
        let stamp = "\(label).\(Int(Date().timeIntervalSince1970)).\(UInt32.random(in: 0...UInt32.max))"
        try directory.rename(name, to: target, as: stamp)
        return true
    }

    /// A name for a temporary entry no other thread or process picks.
    static func uniqueSuffix() -> String {
        "\(ProcessInfo.processInfo.processIdentifier).\(UInt64.random(in: 0...UInt64.max))"
    }
}
