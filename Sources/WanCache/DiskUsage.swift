import Foundation
import WanCore
import WanSystem

/// How much space the cache takes, per model directory and in total.
///
/// Files are identified by inode, so a blob hard-linked into several model directories is
/// counted once in the totals; each model's `sharedBytes` says how much of it is also
/// used by another model.
public struct DiskUsage: Sendable, Codable, Equatable {
    public struct Model: Sendable, Codable, Equatable {
        /// The directory name under `wan22/`: `name@version` or `name@version#variant`.
        public let directory: String
        public let files: Int
        /// Apparent bytes of the model's files.
        public let bytes: Int64
        /// Bytes of files that another model directory links too.
        public let sharedBytes: Int64

        enum CodingKeys: String, CodingKey {
            case directory = "model_id"
            case files, bytes
            case sharedBytes = "shared_bytes"
        }
    }

    public let modelsRoot: String
    public let models: [Model]
    /// Bytes in `.blobs` not linked from any model directory.
    public let unlinkedBlobBytes: Int64
    /// Bytes allocated by partial downloads in `.tmp`.
    public let partialBytes: Int64
    /// Bytes allocated by everything under MODELS_ROOT, each inode counted once.
    public let totalBytes: Int64
    public let filesystem: FileSystemSpace?

    enum CodingKeys: String, CodingKey {
        case modelsRoot = "models_root"
        case models
        case unlinkedBlobBytes = "unlinked_blob_bytes"
        case partialBytes = "partial_bytes"
        case totalBytes = "total_bytes"
        case filesystem
    }

    /// Walks MODELS_ROOT.
    public static func measure(_ resolver: ModelResolver) throws(SystemError) -> DiskUsage {
        struct Inode: Hashable { let device: UInt64; let inode: UInt64 }
        var allocated: [Inode: Int64] = [:]
        var owners: [Inode: Set<String>] = [:]
        var perModel: [String: [(Inode, Int64)]] = [:]

        for directory in subdirectories(of: resolver.modelsDir) {
            var entries: [(Inode, Int64)] = []
            for (_, info) in try regularFiles(under: resolver.modelsDir + "/" + directory) {
                let key = Inode(device: info.device, inode: info.inode)
                allocated[key] = info.allocatedBytes
                owners[key, default: []].insert(directory)
                entries.append((key, info.size))
            }
            perModel[directory] = entries
        }
        var unlinkedBlobs: Int64 = 0
        for (_, info) in try regularFiles(under: resolver.blobsDir) {
            let key = Inode(device: info.device, inode: info.inode)
            if allocated[key] == nil { unlinkedBlobs += info.allocatedBytes }
            allocated[key] = info.allocatedBytes
        }
        var partial: Int64 = 0
        for (_, info) in try regularFiles(under: resolver.tmpDir) {
            let key = Inode(device: info.device, inode: info.inode)
            if allocated[key] == nil { partial += info.allocatedBytes }
            allocated[key] = info.allocatedBytes
        }
        for directory in [resolver.locksDir, resolver.stateDir] {
            for (_, info) in try regularFiles(under: directory) {
                allocated[Inode(device: info.device, inode: info.inode)] = info.allocatedBytes
            }
        }

        let models = perModel.keys.sorted().map { directory -> Model in
            let entries = perModel[directory] ?? []
            return Model(directory: directory, files: entries.count,
                         bytes: entries.reduce(0) { $0 + $1.1 },
                         sharedBytes: entries.filter { (owners[$0.0]?.count ?? 0) > 1 }.reduce(0) { $0 + $1.1 })
        }
        let space = FileManager.default.fileExists(atPath: resolver.modelsRoot) ? try FileSystem.space(at: resolver.modelsRoot) : nil
        return DiskUsage(modelsRoot: resolver.modelsRoot, models: models, unlinkedBlobBytes: unlinkedBlobs,
                         partialBytes: partial, totalBytes: allocated.values.reduce(0, +), filesystem: space)
    }

    /// Names of the directories directly under `path` (symlinks excluded), sorted.
    static func subdirectories(of path: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.filter { (try? FileSystem.info(path + "/" + $0, followSymlinks: false))??.kind == .directory }.sorted()
    }

    /// Regular files below `root` (symlinks are not followed), with their stat info.
    static func regularFiles(under root: String) throws(SystemError) -> [(String, FileInfo)] {
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        var result: [(String, FileInfo)] = []
        while let relative = enumerator.nextObject() as? String {
            let path = root + "/" + relative
            if let info = try FileSystem.info(path, followSymlinks: false), info.kind == .regular {
                result.append((path, info))
            }
        }
        return result
    }
}
