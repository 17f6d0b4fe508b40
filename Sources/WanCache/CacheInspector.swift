import Foundation
import WanCore
import WanSystem

/// Reads the cache's state from disk without changing anything.
public struct CacheInspector: Sendable {
    public let resolver: ModelResolver

    public init(resolver: ModelResolver) {
        self.resolver = resolver
    }

    /// The status of one model variant, judged from the files under `wan22/`.
    ///
    /// A file counts as COMPLETE when it is present with the manifest's size.
    public func status(of spec: ModelSpec) throws(SystemError) -> ModelStatus {
        let directory = resolver.localDir(spec)
        var files: [FileStatus] = []
        for file in spec.files {
            let info = try FileSystem.info(directory + "/" + file.path)
            let complete = info?.kind == .regular && info?.size == file.size
            files.append(FileStatus(path: file.path, size: file.size, sha256: file.sha256, optional: file.optional,
                                    state: complete ? .complete : .notPresent, bytesPresent: complete ? file.size : 0))
        }
        let required = files.filter { !$0.optional }
        return ModelStatus(
            modelID: spec.modelID, variant: spec.variant, state: ModelStatus.combine(files),
            bytesTotal: spec.totalSize, bytesPresent: files.reduce(0) { $0 + $1.bytesPresent },
            bytesNeeded: required.reduce(0) { $0 + ($1.size - $1.bytesPresent) },
            missingFiles: required.filter { $0.state != .complete }.map(\.path),
            lastVerified: nil, files: files)
    }
}
