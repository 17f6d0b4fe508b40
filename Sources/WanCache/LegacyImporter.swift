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
            let cached = FileManager.default.fileExists(atPath: engine.resolver.blobPath(sha256: digest))
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
                        || FileManager.default.fileExists(atPath: engine.resolver.blobPath(sha256: file.sha256))
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
        let resolver = engine.resolver
        try engine.checkSpace(needed: analysis.bytesToImport)
        for match in analysis.matches {
            do {
                let blob = resolver.blobPath(sha256: match.sha256)
                if !FileManager.default.fileExists(atPath: blob) {
                    try copyVerified(match, to: blob)
                    execution.imported.append(match.legacyPath)
                }
                for target in match.targets {
                    try engine.link(blob: blob, to: resolver.modelsDir + "/" + target)
                    execution.linked += 1
                }
            } catch {
                execution.errors.append("\(match.legacyPath): \(error)")
            }
        }
        return execution
    }

    private func copyVerified(_ match: Match, to blob: String) throws {
        let resolver = engine.resolver
        try FileSystem.createDirectories(resolver.tmpDir)
        let temporary = resolver.tmpDir + "/\(match.sha256).import-\(ProcessInfo.processInfo.processIdentifier)"
        let source = try FileDescriptor.open(match.legacyPath, .readOnly)
        defer { source.close() }
        let target = try FileDescriptor.open(temporary, .writeOnly, create: true, truncate: true)
        var committed = false
        defer {
            target.close()
            if !committed { try? FileSystem.unlink(temporary) }
        }
        let hasher = SHA256Hasher()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while true {
            let n = try source.read(into: buffer, at: offset)
            if n == 0 { break }
            let chunk = UnsafeRawBufferPointer(rebasing: buffer[..<n])
            hasher.update(chunk)
            try target.write(chunk, at: offset)
            offset += Int64(n)
        }
        let digest = hasher.finalize().hex
        guard digest == match.sha256, offset == match.size else {
            throw OrchestratorError.checksumMismatch(path: match.legacyPath, expected: match.sha256, actual: digest)
        }
        try target.sync()
        try target.setPermissions(0o444)
        try FileSystem.createDirectories((blob as NSString).deletingLastPathComponent)
        try FileSystem.rename(temporary, to: blob)
        committed = true
    }
}
