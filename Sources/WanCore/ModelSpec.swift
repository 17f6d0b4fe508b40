/// One file of a model (seed 000's `FileSpec`, plus `variant` and chunk digests).
public struct FileSpec: Hashable, Sendable, Codable {
    /// Relative path inside the model directory, `/`-separated.
    public let path: String
    /// Size in bytes.
    public let size: Int64
    /// Lower-case hex sha256 of the whole file.
    public let sha256: String
    /// An optional file does not keep its model from being COMPLETE.
    public let optional: Bool
    /// The variant this file belongs to; `nil` means every variant.
    public let variant: String?
    /// Bytes per chunk when `chunks` is given (or a fetch-size hint when it is not).
    public let chunkSize: Int64?
    /// Lower-case hex sha256 of each chunk, in order; they cover the file exactly.
    public let chunks: [String]?

    /// The largest file a manifest may describe (1 PiB): sizes, and sums of them, always fit.
    public static let maxSize: Int64 = 1 << 50
    /// The largest chunk (64 GiB): a chunk is hashed before any byte of it is served.
    public static let maxChunkSize: Int64 = 1 << 36

    public init(path: String, size: Int64, sha256: String, optional: Bool = false,
                variant: String? = nil, chunkSize: Int64? = nil, chunks: [String]? = nil) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.optional = optional
        self.variant = variant
        self.chunkSize = chunkSize
        self.chunks = chunks
    }

    /// Whether this file is part of `variant` (`nil` asks for files common to all variants).
    public func belongs(to variant: String?) -> Bool {
        self.variant == nil || self.variant == variant
    }

    /// The byte range of chunk `index` when chunk digests are present.
    public func chunkRange(_ index: Int) -> Range<Int64>? {
        guard let chunkSize, let chunks, chunks.indices.contains(index) else { return nil }
        let start = Int64(index) * chunkSize
        return start..<min(start + chunkSize, size)
    }

    enum CodingKeys: String, CodingKey {
        case path, size, sha256, optional, variant
        case chunkSize = "chunk_size"
        case chunks
    }
}

/// VRAM estimation parameters (seed 004's `VramEstimation`). Keys this version does not
/// know are kept in `extra`.
public struct VramEstimation: Hashable, Sendable, Codable {
    public var paramsBillion: Double?
    public var bytesPerParam: Double?
    public var activationOverheadGB: Double?
    /// Figures per resolution, e.g. `{"720p" = 24.5}` in GB.
    public var perResolutionGB: [String: Double]
    public var extra: [String: ManifestValue]

    public init(paramsBillion: Double? = nil, bytesPerParam: Double? = nil, activationOverheadGB: Double? = nil,
                perResolutionGB: [String: Double] = [:], extra: [String: ManifestValue] = [:]) {
        self.paramsBillion = paramsBillion
        self.bytesPerParam = bytesPerParam
        self.activationOverheadGB = activationOverheadGB
        self.perResolutionGB = perResolutionGB
        self.extra = extra
    }

    /// Weights plus activation overhead, in GB, when the parameters are known.
    public var estimatedGB: Double? {
        guard let paramsBillion, let bytesPerParam else { return nil }
        return paramsBillion * bytesPerParam + (activationOverheadGB ?? 0)
    }

    enum CodingKeys: String, CodingKey {
        case paramsBillion = "params_billion"
        case bytesPerParam = "bytes_per_param"
        case activationOverheadGB = "activation_overhead_gb"
        case perResolutionGB = "per_resolution_gb"
        case extra
    }
}

/// Default inference parameters (seed 004's `ModelDefaults`).
public struct ModelDefaults: Hashable, Sendable, Codable {
    public var steps: Int64?
    public var guidanceScale: Double?
    public var resolution: String?
    public var fps: Int64?
    public var frames: Int64?
    public var extra: [String: ManifestValue]

    public init(steps: Int64? = nil, guidanceScale: Double? = nil, resolution: String? = nil,
                fps: Int64? = nil, frames: Int64? = nil, extra: [String: ManifestValue] = [:]) {
        self.steps = steps
        self.guidanceScale = guidanceScale
        self.resolution = resolution
        self.fps = fps
        self.frames = frames
        self.extra = extra
    }

    enum CodingKeys: String, CodingKey {
        case steps
        case guidanceScale = "guidance_scale"
        case resolution, fps, frames, extra
    }
}

/// A model as the manifest describes it (seed 000's `ModelSpec`).
///
/// ``ModelRegistry/spec(_:variant:)`` returns a spec narrowed to one variant: `variant` is
/// set and `files` holds only that variant's files. ``ModelRegistry/model(_:)`` returns the
/// whole entry (`variant == nil`, every file).
public struct ModelSpec: Hashable, Sendable, Codable {
    /// Canonical `name@version`.
    public let modelID: String
    public let version: String
    public let description: String?
    public let variants: [String]
    /// `nil` only when the model declares no variants.
    public let defaultVariant: String?
    /// The variant this spec was narrowed to, if any.
    public let variant: String?
    public let files: [FileSpec]
    /// Sources in priority order.
    public let sources: [SourceURL]
    public let allowPatterns: [String]
    public let resolutionCaps: [String]
    public let optionalComponents: [String]
    public let loraRequired: Bool
    public let vramEstimation: VramEstimation?
    public let defaults: ModelDefaults?
    /// Model-level keys this version does not interpret, kept as written.
    public let extra: [String: ManifestValue]

    public init(modelID: String, version: String, description: String? = nil, variants: [String] = [],
                defaultVariant: String? = nil, variant: String? = nil, files: [FileSpec], sources: [SourceURL],
                allowPatterns: [String] = [], resolutionCaps: [String] = [], optionalComponents: [String] = [],
                loraRequired: Bool = false, vramEstimation: VramEstimation? = nil, defaults: ModelDefaults? = nil,
                extra: [String: ManifestValue] = [:]) {
        self.modelID = modelID
        self.version = version
        self.description = description
        self.variants = variants
        self.defaultVariant = defaultVariant
        self.variant = variant
        self.files = files
        self.sources = sources
        self.allowPatterns = allowPatterns
        self.resolutionCaps = resolutionCaps
        self.optionalComponents = optionalComponents
        self.loraRequired = loraRequired
        self.vramEstimation = vramEstimation
        self.defaults = defaults
        self.extra = extra
    }

    /// Total size of `files`.
    public var totalSize: Int64 { files.reduce(0) { $0.addingClamped($1.size) } }

    /// This spec narrowed to `variant` (which must be one of `variants`, or nil when there are none).
    public func narrowed(to variant: String?) -> ModelSpec {
        with(variant: variant, files: files.filter { $0.belongs(to: variant) })
    }

    /// The same model with another selected variant and file list.
    public func with(variant: String?, files: [FileSpec]) -> ModelSpec {
        ModelSpec(modelID: modelID, version: version, description: description, variants: variants,
                  defaultVariant: defaultVariant, variant: variant, files: files,
                  sources: sources, allowPatterns: allowPatterns, resolutionCaps: resolutionCaps,
                  optionalComponents: optionalComponents, loraRequired: loraRequired,
                  vramEstimation: vramEstimation, defaults: defaults, extra: extra)
    }

    enum CodingKeys: String, CodingKey {
        case modelID = "model_id"
        case version, description, variants
        case defaultVariant = "default_variant"
        case variant, files, sources
        case allowPatterns = "allow_patterns"
        case resolutionCaps = "resolution_caps"
        case optionalComponents = "optional_components"
        case loraRequired = "lora_required"
        case vramEstimation = "vram_estimation"
        case defaults, extra
    }
}

/// One problem found in a manifest: which model, which file or key, and what is wrong.
public struct ManifestIssue: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The model's key as written, or nil for document-level problems.
    public let modelID: String?
    /// The file path or key path the problem is about, if any.
    public let path: String?
    public let message: String

    public init(modelID: String?, path: String?, message: String) {
        self.modelID = modelID
        self.path = path
        self.message = message
    }

    var isSchemaVersion: Bool { modelID == nil && path == "schema_version" }

    public var description: String {
        [modelID, path].compactMap { $0 }.map { $0 + ": " }.joined() + message
    }

    enum CodingKeys: String, CodingKey {
        case modelID = "model_id"
        case path, message
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelID, forKey: .modelID)
        try c.encode(path, forKey: .path)
        try c.encode(message, forKey: .message)
    }
}
