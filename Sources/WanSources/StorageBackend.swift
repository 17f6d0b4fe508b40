import Foundation
import WanCore

/// A file as a source describes it.
public struct RemoteFile: Sendable, Equatable, Codable {
    /// Path relative to the source's base (the manifest path).
    public let path: String
    public let size: Int64
    public let etag: String?
    /// The content's sha256 when the source knows it (Hub LFS files).
    public let sha256: String?
    /// The revision that answered (Hub `X-Repo-Commit`).
    public let revision: String?

    public init(path: String, size: Int64, etag: String? = nil, sha256: String? = nil, revision: String? = nil) {
        self.path = path
        self.size = size
        self.etag = etag
        self.sha256 = sha256
        self.revision = revision
    }
}

/// The outcome of probing a source (`wan models test-sources` / `test-auth`).
public struct SourceCheck: Sendable, Codable, Equatable {
    public let source: String
    public let scheme: String
    public let reachable: Bool
    /// true/false when credentials were involved, nil when the source needs none.
    public let authenticated: Bool?
    public let latencyMS: Double
    public let detail: String
    public let errorCode: String?

    public init(source: String, scheme: String, reachable: Bool, authenticated: Bool?, latencyMS: Double,
                detail: String, errorCode: String?) {
        self.source = source
        self.scheme = scheme
        self.reachable = reachable
        self.authenticated = authenticated
        self.latencyMS = latencyMS
        self.detail = detail
        self.errorCode = errorCode
    }

    enum CodingKeys: String, CodingKey {
        case source, scheme, reachable, authenticated
        case latencyMS = "latency_ms"
        case detail
        case errorCode = "error_code"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(scheme, forKey: .scheme)
        try c.encode(reachable, forKey: .reachable)
        try c.encode(authenticated, forKey: .authenticated)
        try c.encode((latencyMS * 10).rounded() / 10, forKey: .latencyMS)
        try c.encode(detail, forKey: .detail)
        try c.encode(errorCode, forKey: .errorCode)
    }
}

/// Where a model's bytes can come from (seed 000's `StorageBackend`, reshaped for ranges).
///
/// Every method blocks the calling thread (run it on a dedicated thread), is safe to call
/// from several threads at once, and retries transient failures itself, so an error that
/// comes out is final for this source.
public protocol StorageBackend: Sendable {
    /// The manifest source this backend serves.
    var source: SourceURL { get }
    /// The source for messages and logs: no credentials, no query strings.
    var displayName: String { get }
    /// Whether requests to this source carry credentials.
    var usesCredentials: Bool { get }

    /// Size (and etag, sha256, revision when known) of one file.
    func stat(_ path: String, cancel: CancellationToken) throws(SourceError) -> RemoteFile

    /// Writes bytes `range` of `path` into `sink` at their file offsets. `fileSize` (the
    /// manifest's) lets a server that answers a whole-file range with a plain 200 be accepted.
    func read(_ path: String, range: Range<Int64>, fileSize: Int64?, into sink: any ByteSink,
              cancel: CancellationToken) throws(SourceError)

    /// Files under `prefix` (relative to the base), for sources that can list.
    func list(prefix: String, cancel: CancellationToken) throws(SourceError) -> [RemoteFile]

    /// A URL on the host this source's reads go to first (a connection opened to it ahead of
    /// the first read serves them); nil for sources read without a network. Callers reduce it
    /// to `scheme://authority/` and never use one that carries credentials.
    var connectionURL: String? { get }
}

extension StorageBackend {
    /// No network by default.
    public var connectionURL: String? { nil }

    /// Seed 000's `can_handle`.
    public static func canHandle(_ url: SourceURL) -> Bool { SourceURL.schemes.contains(url.scheme) }

    /// Probes the source: stats `samplePath` (a file the manifest says is there), or lists
    /// the base when no sample is given. Reports latency and whether credentials worked.
    public func probe(samplePath: String?, cancel: CancellationToken = .none) -> SourceCheck {
        let started = Date()
        do {
            let detail: String
            if let samplePath {
                let file = try stat(samplePath, cancel: cancel)
                detail = "\(samplePath): \(file.size) bytes" + (file.revision.map { " at revision \($0)" } ?? "")
            } else {
                detail = "listed \(try list(prefix: "", cancel: cancel).count) files"
            }
            return SourceCheck(source: displayName, scheme: source.scheme, reachable: true,
                               authenticated: usesCredentials ? true : nil,
                               latencyMS: Date().timeIntervalSince(started) * 1000, detail: detail, errorCode: nil)
        } catch {
            let reachable = ![.network, .timeout, .misconfigured].contains(error.kind)
            let authenticated: Bool? = [.unauthorized, .forbidden].contains(error.kind) ? false : (usesCredentials && reachable ? true : nil)
            return SourceCheck(source: displayName, scheme: source.scheme, reachable: reachable, authenticated: authenticated,
                               latencyMS: Date().timeIntervalSince(started) * 1000, detail: error.message,
                               errorCode: error.code.rawValue)
        }
    }
}
