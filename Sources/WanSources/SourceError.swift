import Foundation
import WanCore

/// Why a source could not deliver what was asked, with enough detail to decide whether to
/// retry, fail over, or tell the user what to fix. Messages never contain credentials or
/// signed query strings.
public struct SourceError: CodedError, Equatable {
    public enum Kind: String, Sendable, Equatable {
        /// The file (or bucket, repo, revision) does not exist at this source.
        case notFound
        /// Credentials are missing or wrong (401, S3 403 InvalidAccessKeyId/SignatureDoesNotMatch).
        case unauthorized
        /// Credentials are valid but not allowed (403, gated repository).
        case forbidden
        /// The range is empty or outside the file (416).
        case invalidRange
        /// 429 / 503 with or without Retry-After.
        case throttled
        /// Any other 5xx (or 408).
        case serverError
        /// Connecting, sending or receiving failed.
        case network
        /// No progress within the configured timeout.
        case timeout
        /// The response does not match the request: wrong status, wrong Content-Range, too few or too many bytes.
        case protocolViolation
        /// Bytes arrived but fail verification.
        case corrupt
        /// The caller cancelled.
        case cancelled
        /// This source cannot do that (e.g. listing a plain HTTP mirror).
        case unsupported
        /// The source is configured wrongly (bad endpoint, wrong region, path escaping the root).
        case misconfigured
        /// Writing the bytes locally failed (disk full, I/O error).
        case localIO
    }

    public let kind: Kind
    /// The source, as a URL without credentials or query.
    public let source: String
    public let message: String
    /// The HTTP status, when there was one.
    public let status: Int?
    /// Seconds the server asked us to wait (Retry-After).
    public let retryAfter: Double?
    /// The underlying local error's code, for `.localIO` (e.g. NO_SPACE).
    public let localCode: ErrorCode?

    public init(_ kind: Kind, source: String, message: String, status: Int? = nil, retryAfter: Double? = nil,
                localCode: ErrorCode? = nil) {
        self.kind = kind
        self.source = source
        self.message = message
        self.status = status
        self.retryAfter = retryAfter
        self.localCode = localCode
    }

    /// Whether trying the same request again may succeed.
    public var isRetryable: Bool {
        switch kind {
        case .throttled, .serverError, .network, .timeout, .protocolViolation: true
        default: false
        }
    }

    public var code: ErrorCode {
        switch kind {
        case .notFound: .remoteNotFound
        case .unauthorized, .forbidden: .authFailed
        case .invalidRange: .invalidRange
        case .protocolViolation: .protocolError
        case .corrupt: .checksumFail
        case .cancelled: .cancelled
        case .misconfigured: .configInvalid
        case .unsupported: .notImplemented
        case .localIO: localCode ?? .ioError
        case .throttled, .serverError, .network, .timeout: .sourceUnavailable
        }
    }

    public var description: String {
        let statusText = status.map { " (HTTP \($0))" } ?? ""
        return "\(source): \(message)\(statusText)"
    }
}

/// Every source of a model failed for a file; lists each one and why.
public struct AllSourcesFailedError: CodedError {
    public let path: String
    public let failures: [SourceError]

    public init(path: String, failures: [SourceError]) {
        self.path = path
        self.failures = failures
    }

    /// The most telling code: corrupt beats not-found beats unavailable.
    public var code: ErrorCode {
        let codes = failures.map(\.code)
        for preferred in [ErrorCode.checksumFail, .noSpace, .invalidRange, .authFailed, .remoteNotFound] where codes.contains(preferred) {
            return preferred
        }
        return failures.last?.code ?? .sourceUnavailable
    }

    public var description: String {
        if failures.isEmpty { return "\(path): the model has no usable source" }
        let lines = failures.enumerated().map { "  \($0.offset + 1). \($0.element)" }.joined(separator: "\n")
        return "\(path): every source failed:\n\(lines)"
    }
}

/// A URL fit for messages and logs: no userinfo, no query string (signed URLs carry credentials there).
func redacted(_ url: String) -> String {
    var text = url
    if let query = text.firstIndex(of: "?") { text = String(text[..<query]) }
    if let schemeEnd = text.range(of: "://"), let at = text[schemeEnd.upperBound...].firstIndex(of: "@"),
       !text[schemeEnd.upperBound..<at].contains("/") {
        text = String(text[..<schemeEnd.upperBound]) + text[text.index(after: at)...]
    }
    return text
}
