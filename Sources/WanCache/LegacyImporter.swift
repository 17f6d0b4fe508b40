import Foundation
import WanCore
import WanSystem

/// Finds files of manifest models in a legacy folder (by size, then sha256) and imports
/// them into the cache without any download (`wan models migrate`).
public struct LegacyImporter: Sendable {
    public let engine: CacheEngine

    public init(engine: CacheEngine) {
        self.engine = engine
    }

    /// A legacy file whose content is a file of a model.
    public struct Match: Sendable, Codable, Equatable {
        public let legacyPath: String
        public let sha256: String
        public let size: Int64
        /// Where it belongs: `model directory/path` for every model variant that has it.
        public let targets: [String]
        /// The content is already in the cache: importing only links it.
        public let cached: Bool

        enum CodingKeys: String, CodingKey {
            case legacyPath = "legacy_path"
            case sha256, size, targets, cached
        }
    }

    public struct Analysis: Sendable, Codable, Equatable {
        public var folder: String
        public var scannedFiles = 0
        public var scannedBytes: Int64 = 0
        /// Files whose size matched a manifest file and were therefore hashed.
        public var hashedFiles = 0
        public var matches: [Match] = []
        /// Model variants that would be complete after importing.
        public var completeModels: [String] = []
        /// Bytes that would be copied into the cache (content not cached yet).
        public var bytesToImport: Int64 = 0
        public var alreadyCached = 0

        enum CodingKeys: String, CodingKey {
            case folder
            case scannedFiles = "scanned_files"
            case scannedBytes = "scanned_bytes"
            case hashedFiles = "hashed_files"
            case matches
            case completeModels = "complete_models"
            case bytesToImport = "bytes_to_import"
            case alreadyCached = "already_cached"
        }
    }

    public struct Execution: Sendable, Codable, Equatable {
        public var analysis: Analysis
        public var imported: [String] = []
        public var linked = 0
        public var errors: [String] = []
    }

    /// Every (model variant, file) of the manifest, by size.
    private func manifestFiles() -> [Int64: [(spec: ModelSpec, file: FileSpec)]] {
        var bySize: [Int64: [(ModelSpec, FileSpec)]] = [:]
        for model in engine.registry.manifest.models {
            for variant in model.variants.isEmpty ? [nil] : model.variants.map(Optional.some) {
                let spec = model.narrowed(to: variant)
                for file in spec.files { bySize[file.size, default: []].append((spec, file)) }
            }
        }
        return bySize
    }

    /// Scans `folder`: only files whose size matches a manifest file are hashed.
    public func analyze(_ folder: String) throws -> Analysis {
        var analysis = Analysis(folder: URL(fileURLWithPath: folder).standardizedFileURL.path)
        let bySize = manifestFiles()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: analysis.folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw OrchestratorError.configInvalid(key: "migrate folder", message: "\(analysis.folder) is not a folder")
        }
        var foundContent = Set<String>()
        for (path, info) in try DiskUsage.regularFiles(under: analysis.folder) {
            analysis.scannedFiles += 1
            analysis.scannedBytes += info.size
            guard let candidates = bySize[info.size] else { continue }
            analysis.hashedFiles += 1
            let digest = try SHA256Hasher.hash(fileAt: path).hex
            let owners = candidates.filter { $0.file.sha256 == digest }
            guard !owners.isEmpty, foundContent.insert(digest).inserted else { continue }
            let targets = owners.map { engine.modelKey($0.spec) + "/" + $0.file.path }
            let cached = engine.blobExists(FileSpec(path: path, size: info.size, sha256: digest))
            analysis.matches.append(Match(legacyPath: path, sha256: digest, size: info.size, targets: targets.sorted(), cached: cached))
            if cached {
                analysis.alreadyCached += 1
            } else {
                analysis.bytesToImport += info.size
            }
        }
        analysis.matches.sort { $0.legacyPath < $1.legacyPath }
        // Which variants would then have every required file.
        for model in engine.registry.manifest.models {
            for variant in model.variants.isEmpty ? [nil] : model.variants.map(Optional.some) {
                let spec = model.narrowed(to: variant)
                let available = spec.files.filter { !$0.optional }.allSatisfy { file in
                    foundContent.contains(file.sha256) || engine.isLinked(file, in: engine.resolver.localDir(spec))
                        || engine.blobExists(file)
                }
                if available && !spec.files.isEmpty { analysis.completeModels.append(engine.modelKey(spec)) }
            }
        }
        return analysis
    }

    /// Imports every match: copies the content into `.blobs/` (verifying the sha256 again
    /// while copying) and links it into each model directory. The legacy folder is not changed.
    public func execute(_ folder: String) throws -> Execution {
        let analysis = try analyze(folder)
        var execution = Execution(analysis: analysis)
        try engine.checkSpace(needed: analysis.bytesToImport)
        for match in analysis.matches {
            let content = FileSpec(path: match.legacyPath, size: match.size, sha256: match.sha256)
            do {
                if !engine.blobExists(content) {
                    try copyVerified(match, as: content)
                    execution.imported.append(match.legacyPath)
                }
                for target in match.targets {
                    guard let slash = target.firstIndex(of: "/") else { continue }
                    try engine.link(content, into: String(target[..<slash]), at: String(target[target.index(after: slash)...]))
                    execution.linked += 1
                }
            } catch {
                execution.errors.append("\(match.legacyPath): \(error)")
            }
        }
        return execution
    }

    /// Copies the legacy file into `.tmp/`, hashing it as it goes, and commits it as a blob
    /// when its digest and size are the content's.
    private func copyVerified(_ match: Match, as content: FileSpec) throws {
        let tmp = try engine.root.tmp()
        let temporary = "\(match.sha256).import-\(CacheRoot.uniqueSuffix())"
        let source = try FileDescriptor.open(match.legacyPath, .readOnly)
        defer { source.close() }
        let target = try tmp.openFile(temporary, .readWrite, create: true, exclusive: true)
        var committed = false
        defer {
            target.close()
            if !committed { _ = try? tmp.remove(temporary) }
        }
        let digest = WholeFileDigest(size: match.size)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while true {
            let n = try source.read(into: buffer, at: offset)
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[..<n])
            try target.write(chunk, at: offset)
            digest.wrote(chunk, at: offset)
            offset += Int64(n)
        }
        guard offset == match.size, let hex = digest.finish() else {
            throw OrchestratorError.checksumMismatch(path: match.legacyPath, expected: match.sha256, actual: "size \(offset)")
        }
        try BlobStore(root: engine.root).commit(temporary: temporary, descriptor: target, content: content, digest: hex)
        committed = true
    }
}
