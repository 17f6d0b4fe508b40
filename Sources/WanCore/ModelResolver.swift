import Foundation

/// The deterministic layout under MODELS_ROOT (seed 000's `ModelResolver`, DESIGN.md):
///
/// ```
/// MODELS_ROOT/
///   wan22/<model_id>/...          complete, verified files of the default variant
///   wan22/<model_id>#<variant>/   any other variant
///   .blobs/sha256/<aa>/<hash>     content-addressed store (hard-linked into wan22/)
///   .tmp/<model_id>/              partial files and their range maps
///   .locks/                       flock lock files
///   .state/state.sqlite           pins, access times, history
/// ```
///
/// Pure path arithmetic: nothing here touches the disk.
public struct ModelResolver: Sendable, Hashable {
    /// Absolute, standardized MODELS_ROOT.
    public let modelsRoot: String

    public init(modelsRoot: String) {
        self.modelsRoot = URL(fileURLWithPath: modelsRoot).standardizedFileURL.path
    }

    public var modelsDir: String { join(modelsRoot, "wan22") }
    public var blobsDir: String { join(modelsRoot, ".blobs", "sha256") }
    public var tmpDir: String { join(modelsRoot, ".tmp") }
    public var locksDir: String { join(modelsRoot, ".locks") }
    public var stateDir: String { join(modelsRoot, ".state") }
    public var statePath: String { join(stateDir, "state.sqlite") }

    /// The directory name of a model variant inside `wan22/` (and of its folder in the mount):
    /// `name@version` for the default variant, `name@version#variant` for the others.
    public static func directoryName(modelID: String, variant: String?, defaultVariant: String?) -> String {
        guard let variant, variant != defaultVariant else { return modelID }
        return "\(modelID)#\(variant)"
    }

    /// Where the complete files of `spec`'s variant live (`local_dir()`).
    public func localDir(_ spec: ModelSpec) -> String {
        join(modelsDir, Self.directoryName(modelID: spec.modelID, variant: spec.variant, defaultVariant: spec.defaultVariant))
    }

    /// Where the complete files of `id` live; an id without a variant means the default variant.
    public func localDir(_ id: ModelID) -> String {
        join(modelsDir, id.description)
    }

    /// Where a model's partial downloads live (`temp_dir()`).
    public func tempDir(modelID: String) -> String { join(tmpDir, modelID) }

    /// The content-addressed location of a verified file.
    public func blobPath(sha256: String) -> String {
        join(blobsDir, String(sha256.prefix(2)), sha256)
    }

    /// The lock file guarding a whole model.
    public func modelLockPath(modelID: String) -> String { join(locksDir, "\(modelID).lock") }

    /// The lock file guarding the fetch of one file's content.
    public func fileLockPath(sha256: String) -> String { join(locksDir, "files", "\(sha256).lock") }

    private func join(_ base: String, _ parts: String...) -> String {
        parts.reduce(base) { $0.hasSuffix("/") ? $0 + $1 : $0 + "/" + $1 }
    }
}
