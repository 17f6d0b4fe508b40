/// A stable, machine-readable error code (seed 000's `error_code`).
///
/// Codes are part of the contract: scripts match on them in `--json` output and the
/// sidecar returns them in its error envelope. New codes may be added; existing ones
/// never change meaning.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let modelNotFound = ErrorCode("MODEL_NOT_FOUND")
    public static let variantNotFound = ErrorCode("VARIANT_NOT_FOUND")
    public static let invalidModelID = ErrorCode("INVALID_MODEL_ID")
    public static let manifestInvalid = ErrorCode("MANIFEST_INVALID")
    public static let manifestNotFound = ErrorCode("MANIFEST_NOT_FOUND")
    public static let schemaVersion = ErrorCode("SCHEMA_VERSION_UNSUPPORTED")
    public static let configInvalid = ErrorCode("CONFIG_INVALID")
    public static let noSpace = ErrorCode("NO_SPACE")
    public static let checksumFail = ErrorCode("CHECKSUM_FAIL")
    public static let lockTimeout = ErrorCode("LOCK_TIMEOUT")
    public static let ioError = ErrorCode("IO_ERROR")
    public static let sourceUnavailable = ErrorCode("SOURCE_UNAVAILABLE")
    public static let authFailed = ErrorCode("AUTH_FAILED")
    public static let remoteNotFound = ErrorCode("REMOTE_NOT_FOUND")
    public static let invalidRange = ErrorCode("INVALID_RANGE")
    public static let protocolError = ErrorCode("PROTOCOL_ERROR")
    public static let cancelled = ErrorCode("CANCELLED")
    public static let notImplemented = ErrorCode("NOT_IMPLEMENTED")

    /// Codes that mean "the caller asked for something invalid" rather than
    /// "the operation failed". The CLI exits 2 for these and 1 for the rest.
    public var isInvalidInput: Bool {
        [.modelNotFound, .variantNotFound, .invalidModelID, .manifestInvalid,
         .manifestNotFound, .schemaVersion, .configInvalid, .notImplemented].contains(self)
    }
}

/// An error that carries an ``ErrorCode`` and a message fit for a person.
///
/// Every error the project throws conforms, so front ends (CLI, sidecar, mount logs)
/// can report `code` and `description` uniformly. Messages never contain secrets.
public protocol CodedError: Error, CustomStringConvertible, Sendable {
    var code: ErrorCode { get }
}

/// Errors of the model orchestrator core (seed 000's exception hierarchy).
public enum OrchestratorError: CodedError, Equatable {
    /// `ModelNotFoundError`: the id is not in the manifest.
    case modelNotFound(modelID: String, available: [String])
    /// The model exists but has no such variant.
    case variantNotFound(modelID: String, variant: String, available: [String])
    /// The id does not follow `name@version[#variant]`.
    case invalidModelID(String, reason: String)
    /// The manifest file does not exist or cannot be read.
    case manifestNotFound(path: String, reason: String)
    /// The manifest was read but breaks one or more rules; every issue is listed.
    case manifestInvalid(path: String, issues: [ManifestIssue])
    /// `InsufficientSpaceError`.
    case insufficientSpace(path: String, required: Int64, available: Int64)
    /// `ChecksumVerificationError`.
    case checksumMismatch(path: String, expected: String, actual: String)
    /// `LockTimeoutError`.
    case lockTimeout(resource: String, timeout: Double)
    /// A configuration value (file, environment or flag) is invalid.
    case configInvalid(key: String, message: String)
    /// A feature that a later release provides.
    case notImplemented(String)

    public var code: ErrorCode {
        switch self {
        case .modelNotFound: .modelNotFound
        case .variantNotFound: .variantNotFound
        case .invalidModelID: .invalidModelID
        case .manifestNotFound: .manifestNotFound
        case .manifestInvalid(_, let issues):
            issues.contains { $0.isSchemaVersion } ? .schemaVersion : .manifestInvalid
        case .insufficientSpace: .noSpace
        case .checksumMismatch: .checksumFail
        case .lockTimeout: .lockTimeout
        case .configInvalid: .configInvalid
        case .notImplemented: .notImplemented
        }
    }

    public var description: String {
        switch self {
        case .modelNotFound(let id, let available):
            var message = "Model not found: \(id)"
            if !available.isEmpty {
                let shown = available.prefix(5).joined(separator: ", ")
                message += ". Available models: \(shown)" + (available.count > 5 ? ", ..." : "")
            }
            return message
        case .variantNotFound(let id, let variant, let available):
            let list = available.isEmpty ? "it has no variants" : "available: \(available.joined(separator: ", "))"
            return "Variant '\(variant)' not found for model \(id) (\(list))"
        case .invalidModelID(let id, let reason):
            return "Invalid model id '\(id)': \(reason)"
        case .manifestNotFound(let path, let reason):
            return "Cannot read manifest \(path): \(reason)"
        case .manifestInvalid(let path, let issues):
            let lines = issues.map { "  - \($0)" }.joined(separator: "\n")
            return "Manifest \(path) is invalid (\(issues.count) error\(issues.count == 1 ? "" : "s")):\n\(lines)"
        case .insufficientSpace(let path, let required, let available):
            return "Insufficient disk space at \(path): need \(required) bytes, have \(available) bytes"
        case .checksumMismatch(let path, let expected, let actual):
            return "Checksum verification failed for \(path): expected \(expected), got \(actual)"
        case .lockTimeout(let resource, let timeout):
            return "Lock timeout for \(resource) after \(timeout) seconds"
        case .configInvalid(let key, let message):
            return "Invalid configuration '\(key)': \(message)"
        case .notImplemented(let what):
            return "\(what) is not implemented yet"
        }
    }
}
