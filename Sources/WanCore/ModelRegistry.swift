import Foundation

/// The models of one manifest file (seed 000/004's `ModelRegistry`).
///
/// Two ways in:
/// - ``init(manifestPath:)`` for everything that fetches or serves: it throws
///   ``OrchestratorError/manifestInvalid(path:issues:)`` listing every problem.
/// - ``inspect(manifestPath:)`` for `validate-manifest`: it only throws when the file cannot
///   be read, and keeps every problem in ``issues``.
public struct ModelRegistry: Sendable {
    /// Absolute path of the manifest file.
    public let manifestPath: String
    public let manifest: Manifest
    /// Every problem found; empty for a valid manifest.
    public let issues: [ManifestIssue]
    private let byID: [String: ModelSpec]

    /// Loads and validates the manifest; throws if it has any problem.
    public init(manifestPath: String) throws(OrchestratorError) {
        self = try ModelRegistry.inspect(manifestPath: manifestPath)
        if !issues.isEmpty { throw .manifestInvalid(path: self.manifestPath, issues: issues) }
    }

    /// Parses manifest text (no file); throws if it has any problem.
    public init(text: String, path: String = "<memory>") throws(OrchestratorError) {
        self = ModelRegistry.inspect(text: text, path: path)
        if !issues.isEmpty { throw .manifestInvalid(path: path, issues: issues) }
    }

    /// Loads the manifest and records its problems without throwing for them.
    public static func inspect(manifestPath: String) throws(OrchestratorError) -> ModelRegistry {
        let url = URL(fileURLWithPath: manifestPath).standardizedFileURL
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            let reason: String
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) {
                reason = "no such file (set --manifest or WAN_MODELS_MANIFEST)"
            } else if isDirectory.boolValue {
                reason = "it is a directory"
            } else {
                reason = "it is not readable UTF-8 text (\((error as NSError).localizedDescription))"
            }
            throw .manifestNotFound(path: url.path, reason: reason)
        }
        return inspect(text: text, path: url.path)
    }

    /// Parses manifest text and records its problems.
    public static func inspect(text: String, path: String) -> ModelRegistry {
        do {
            let tree = try ManifestValue.parseTOML(text)
            var parser = ManifestParser()
            let manifest = parser.parse(tree)
            return ModelRegistry(manifestPath: path, manifest: manifest, issues: parser.issues)
        } catch {
            let issue = ManifestIssue(modelID: nil, path: "line \(error.line)", message: error.description)
            return ModelRegistry(manifestPath: path, manifest: Manifest(schemaVersion: 0, models: []), issues: [issue])
        }
    }

    private init(manifestPath: String, manifest: Manifest, issues: [ManifestIssue]) {
        self.manifestPath = manifestPath
        self.manifest = manifest
        self.issues = issues
        self.byID = Dictionary(manifest.models.map { ($0.modelID, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The manifest's folder: the default root for `local://` sources.
    public var manifestDirectory: String {
        URL(fileURLWithPath: manifestPath).deletingLastPathComponent().path
    }

    /// Every model id, sorted (`list_models()`).
    public func listModels() -> [String] { manifest.models.map(\.modelID) }

    /// Every problem with the manifest (`validate_manifest()`); empty when valid.
    public func validateManifest() -> [ManifestIssue] { issues }

    /// The whole manifest entry for a model, all variants.
    public func model(_ modelID: String) throws(OrchestratorError) -> ModelSpec {
        let id = try ModelID(parsing: modelID)
        guard let spec = byID[id.base] else {
            throw .modelNotFound(modelID: id.base, available: listModels())
        }
        return spec
    }

    /// The spec of one variant of a model (`spec()`): `modelID` may carry `#variant`;
    /// without one the model's default variant is used.
    public func spec(_ modelID: String, variant: String? = nil) throws(OrchestratorError) -> ModelSpec {
        let id = try ModelID(parsing: modelID, variant: variant)
        return try spec(id)
    }

    /// The spec for an already parsed id.
    public func spec(_ id: ModelID) throws(OrchestratorError) -> ModelSpec {
        guard let model = byID[id.base] else {
            throw .modelNotFound(modelID: id.base, available: listModels())
        }
        guard let requested = id.variant else { return model.narrowed(to: model.defaultVariant) }
        guard model.variants.contains(requested) else {
            throw .variantNotFound(modelID: id.base, variant: requested, available: model.variants)
        }
        return model.narrowed(to: requested)
    }
}
