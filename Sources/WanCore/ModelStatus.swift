import Foundation

/// Where a model (or one file) stands in the cache (seed 000's state values).
public enum ModelState: String, Sendable, Codable, CaseIterable {
    /// Nothing of it is on disk.
    case notPresent = "NOT_PRESENT"
    /// Some bytes are on disk, not all.
    case partial = "PARTIAL"
    /// All bytes are on disk and the whole-file check is running.
    case verifying = "VERIFYING"
    /// Every required file is on disk and verified.
    case complete = "COMPLETE"
    /// Bytes on disk failed verification.
    case corrupt = "CORRUPT"
}

/// The state of one file of a model.
public struct FileStatus: Sendable, Equatable, Codable {
    public let path: String
    public let size: Int64
    public let sha256: String
    public let optional: Bool
    public let state: ModelState
    public let bytesPresent: Int64
    /// Why the file is CORRUPT (which chunk, which sources), when it is.
    public let detail: String?

    public init(path: String, size: Int64, sha256: String, optional: Bool, state: ModelState, bytesPresent: Int64, detail: String? = nil) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.optional = optional
        self.state = state
        self.bytesPresent = bytesPresent
        self.detail = detail
    }

    enum CodingKeys: String, CodingKey {
        case path, size, sha256, optional, state
        case bytesPresent = "bytes_present"
        case detail
    }
}

/// The state of one model variant (seed 000's `ModelStatus`, with byte counts).
public struct ModelStatus: Sendable, Equatable, Codable {
    public let modelID: String
    public let variant: String?
    public let state: ModelState
    public let bytesTotal: Int64
    public let bytesPresent: Int64
    /// Bytes still to fetch for the required files.
    public let bytesNeeded: Int64
    /// Required files that are not complete.
    public let missingFiles: [String]
    public let lastVerified: Date?
    public let files: [FileStatus]
    /// The model's recorded access trace and how much of it is here (`wan models status`);
    /// nil when none was recorded or it was not asked for.
    public var trace: TraceSummary?

    public init(modelID: String, variant: String?, state: ModelState, bytesTotal: Int64, bytesPresent: Int64,
                bytesNeeded: Int64, missingFiles: [String], lastVerified: Date?, files: [FileStatus]) {
        self.modelID = modelID
        self.variant = variant
        self.state = state
        self.bytesTotal = bytesTotal
        self.bytesPresent = bytesPresent
        self.bytesNeeded = bytesNeeded
        self.missingFiles = missingFiles
        self.lastVerified = lastVerified
        self.files = files
    }

    /// Combines file states into a model state: any CORRUPT file makes the model CORRUPT,
    /// then VERIFYING, then COMPLETE when every required file is; NOT_PRESENT when no byte
    /// is on disk; PARTIAL otherwise.
    public static func combine(_ files: [FileStatus]) -> ModelState {
        let required = files.filter { !$0.optional }
        if files.contains(where: { $0.state == .corrupt }) { return .corrupt }
        if required.allSatisfy({ $0.state == .complete }) { return .complete }
        if files.contains(where: { $0.state == .verifying }) { return .verifying }
        if files.allSatisfy({ $0.bytesPresent == 0 && $0.state != .complete }) { return .notPresent }
        return .partial
    }

    enum CodingKeys: String, CodingKey {
        case modelID = "model_id"
        case variant, state
        case bytesTotal = "bytes_total"
        case bytesPresent = "bytes_present"
        case bytesNeeded = "bytes_needed"
        case missingFiles = "missing_files"
        case lastVerified = "last_verified"
        case files, trace
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelID = try c.decode(String.self, forKey: .modelID)
        variant = try c.decodeIfPresent(String.self, forKey: .variant)
        state = try c.decode(ModelState.self, forKey: .state)
        bytesTotal = try c.decode(Int64.self, forKey: .bytesTotal)
        bytesPresent = try c.decode(Int64.self, forKey: .bytesPresent)
        bytesNeeded = try c.decode(Int64.self, forKey: .bytesNeeded)
        missingFiles = try c.decode([String].self, forKey: .missingFiles)
        lastVerified = try c.decodeIfPresent(Date.self, forKey: .lastVerified)
        files = try c.decodeIfPresent([FileStatus].self, forKey: .files) ?? []
        trace = try c.decodeIfPresent(TraceSummary.self, forKey: .trace)
    }

    /// Encodes `variant` and `last_verified` as explicit nulls, `files` only when non-empty,
    /// `trace` only when there is one.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(modelID, forKey: .modelID)
        try c.encode(variant, forKey: .variant)
        try c.encode(state, forKey: .state)
        try c.encode(bytesTotal, forKey: .bytesTotal)
        try c.encode(bytesPresent, forKey: .bytesPresent)
        try c.encode(bytesNeeded, forKey: .bytesNeeded)
        try c.encode(missingFiles, forKey: .missingFiles)
        try c.encode(lastVerified, forKey: .lastVerified)
        if !files.isEmpty { try c.encode(files, forKey: .files) }
        try c.encodeIfPresent(trace, forKey: .trace)
    }
}

/// A model's recorded access trace, as status reports it: its size, and how much of it is
/// already in the cache (what a replay would not fetch).
public struct TraceSummary: Sendable, Equatable, Codable {
    public let ranges: Int
    public let bytes: Int64
    public let bytesPresent: Int64
    public let runs: Int
    public let updated: Date?

    public init(ranges: Int, bytes: Int64, bytesPresent: Int64, runs: Int, updated: Date?) {
        self.ranges = ranges
        self.bytes = bytes
        self.bytesPresent = bytesPresent
        self.runs = runs
        self.updated = updated
    }

    enum CodingKeys: String, CodingKey {
        case ranges, bytes, runs, updated
        case bytesPresent = "bytes_present"
    }
}

extension ModelStatus {
    /// Complete required files over required files; 0 when the model is CORRUPT.
    public var integrityScore: Double {
        if state == .corrupt { return 0 }
        let required = files.filter { !$0.optional }
        return required.isEmpty ? 1 : Double(required.filter { $0.state == .complete }.count) / Double(required.count)
    }
}
