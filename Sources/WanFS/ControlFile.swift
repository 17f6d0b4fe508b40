import Foundation
import Glibc
import WanCore
import WanSystem

/// Generated files under `/.wanfs/` that let tools see the live mount.
enum ControlFile: String, CaseIterable, Sendable {
    /// `{"mount": {...}, "models": [ModelStatus...], "fetches": [...]}`, made when opened.
    case status
    /// What is mounted: MODELS_ROOT, the manifest, the mount options.
    case mount

    var name: String { rawValue + ".json" }
}

/// What `/.wanfs/mount.json` holds (and the `mount` part of `status.json`).
public struct MountDescription: Codable, Sendable, Equatable {
    public let modelsRoot: String
    public let manifest: String
    public let mountpoint: String
    public let pid: Int32
    public let verify: String
    public let started: Date
    /// Whether the kernel serves complete files straight from their blobs (FUSE passthrough).
    /// nil from a mount of a version that did not say.
    public var passthrough: Bool? = nil
    /// Whether files still being fetched are opened for direct I/O (`direct_io=auto` and the
    /// kernel allows mmap of such opens). nil from a mount of a version that did not say.
    public var directIO: Bool? = nil
    /// The manifest reloads (SIGHUP, `wan models reload`). nil from a mount of a version
    /// that could not reload.
    public var reloads: ReloadRecord? = nil
    /// The process that starts a new daemon if this one dies (nil: none).
    public var holder: Int32? = nil

    enum CodingKeys: String, CodingKey {
        case modelsRoot = "models_root"
        case manifest, mountpoint, pid, verify, started, passthrough
        case directIO = "direct_io"
        case reloads, holder
    }
}

/// What the manifest reloads of a mount did: how many were applied and refused, and the last
/// one's outcome.
public struct ReloadRecord: Codable, Sendable, Equatable {
    /// Reloads applied.
    public var applied = 0
    /// Reloads refused (the manifest did not load; the mount kept the one it had).
    public var refused = 0
    public var last: Date?
    /// Why the last reload was refused; nil when it was applied (or none happened).
    public var lastError: String?
    /// Models the manifest in use names.
    public var models: Int?

    public init() {}

    mutating func recordApplied(models count: Int) {
        applied += 1
        last = Date()
        lastError = nil
        models = count
    }

    mutating func recordRefused(_ reason: String) {
        refused += 1
        last = Date()
        lastError = reason
    }

    /// Every reload so far, applied or refused.
    public var total: Int { applied + refused }

    enum CodingKeys: String, CodingKey {
        case applied, refused, last, models
        case lastError = "last_error"
    }
}

/// What `/.wanfs/status.json` holds.
public struct MountStatus: Codable, Sendable {
    public struct Fetch: Codable, Sendable {
        public let sha256: String
        public let path: String
        public let model: String
        public let phase: String
        public let bytesPresent: Int64
        public let size: Int64
        public let inFlightBlocks: Int
        public let source: String?

        enum CodingKeys: String, CodingKey {
            case sha256, path, model, phase
            case bytesPresent = "bytes_present"
            case size
            case inFlightBlocks = "in_flight_blocks"
            case source
        }
    }

    public let mount: MountDescription
    public let models: [ModelStatus]
    public let fetches: [Fetch]
}

extension MountStatus {
    /// The live status of the wanfs mount at `mountpoint`, read from its `.wanfs/status.json`;
    /// nil when `mountpoint` is not a wanfs mount.
    public static func read(mountpoint: String) throws(SystemError) -> MountStatus? {
        let path = mountpoint + "/.wanfs/" + ControlFile.status.name
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SystemError(errno: EIO, operation: "read the mount's status", path: path)
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let status = try? decoder.decode(MountStatus.self, from: data) else {
            throw SystemError(errno: EPROTO, operation: "decode the mount's status", path: path)
        }
        return status
    }
}
