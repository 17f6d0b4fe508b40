/// One entry of a model's `sources.priority` list, parsed.
///
/// | form | meaning |
/// | --- | --- |
/// | `local://rel/path` | `rel/path` under the local source root (`WAN_LOCAL_ROOT`, default the manifest's folder) |
/// | `local:///abs/path` | an absolute folder |
/// | `s3://bucket/prefix` | S3 or an S3-compatible server (`AWS_ENDPOINT_URL`) |
/// | `hf://org/repo[@revision]` | a Hugging Face Hub repository (`HF_ENDPOINT`), pinned to a revision if given |
/// | `http(s)://host/path` | a mirror or CDN that serves the files with Range |
///
/// A file's location is the source's base joined with the file's manifest path.
public struct SourceURL: Hashable, Sendable, CustomStringConvertible, Codable {
    public enum Location: Hashable, Sendable {
        /// `path` is relative to the local source root unless `isAbsolute`.
        case local(path: String, isAbsolute: Bool)
        case s3(bucket: String, prefix: String)
        /// `repo` is `org/name`.
        case huggingFace(repo: String, revision: String?)
        /// `base` is the URL without a trailing slash.
        case http(base: String)
    }

    /// The text as written in the manifest.
    public let raw: String
    public let location: Location

    public static let schemes = ["local", "s3", "hf", "http", "https"]

    public var scheme: String { String(raw.prefix(while: { $0 != ":" })) }
    public var description: String { raw }

    public init(parsing raw: String) throws(SourceURLError) {
        self.raw = raw
        self.location = try SourceURL.parseLocation(raw)
    }

    public init(from decoder: any Decoder) throws {
        let raw = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: raw)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(raw)
    }

    private static func parseLocation(_ raw: String) throws(SourceURLError) -> Location {
        guard let range = raw.range(of: "://") else {
            throw SourceURLError(url: raw, reason: "it has no scheme; use one of \(schemes.map { $0 + "://" }.joined(separator: ", "))")
        }
        let scheme = String(raw[..<range.lowerBound])
        let rest = String(raw[range.upperBound...])
        if rest.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
            throw SourceURLError(url: raw, reason: "it contains whitespace")
        }
        switch scheme {
        case "local":
            if rest.isEmpty { throw SourceURLError(url: raw, reason: "the path is empty") }
            let isAbsolute = rest.hasPrefix("/")
            let path = isAbsolute ? rest : trimSlashes(rest)
            if !isAbsolute && path.split(separator: "/").contains("..") {
                throw SourceURLError(url: raw, reason: "a relative local path may not contain '..'; use local:///absolute/path")
            }
            return .local(path: path, isAbsolute: isAbsolute)
        case "s3":
            let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let bucket = String(parts[0])
            if let reason = bucketProblem(bucket) { throw SourceURLError(url: raw, reason: reason) }
            let prefix = parts.count > 1 ? trimSlashes(String(parts[1])) : ""
            return .s3(bucket: bucket, prefix: prefix)
        case "hf":
            let atSplit = rest.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
            let repo = trimSlashes(String(atSplit[0]))
            let segments = repo.split(separator: "/", omittingEmptySubsequences: false)
            guard segments.count == 2, segments.allSatisfy({ !$0.isEmpty && isRepoSegment($0) }) else {
                throw SourceURLError(url: raw, reason: "expected hf://org/repo or hf://org/repo@revision")
            }
            var revision: String?
            if atSplit.count == 2 {
                guard !atSplit[1].isEmpty else { throw SourceURLError(url: raw, reason: "the revision after '@' is empty") }
                // A branch, tag, commit or `refs/pr/N`: path segments that name something (it
                // becomes part of URLs and of the mount's Hugging Face view).
                let parts = atSplit[1].split(separator: "/", omittingEmptySubsequences: false)
                guard parts.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }),
                      !atSplit[1].contains(where: { $0.isWhitespace || $0.asciiValue.map { $0 < 0x20 || $0 == 0x7f } == true }) else {
                    throw SourceURLError(url: raw, reason: "the revision '\(atSplit[1])' has an empty, '.' or '..' segment or a control character")
                }
                revision = String(atSplit[1])
            }
            return .huggingFace(repo: repo, revision: revision)
        case "http", "https":
            let authority = rest.prefix(while: { $0 != "/" })
            if authority.isEmpty { throw SourceURLError(url: raw, reason: "the host is empty") }
            if authority.contains("@") {
                throw SourceURLError(url: raw, reason: "credentials in source URLs are not allowed (they would show in logs); configure headers instead")
            }
            var base = raw
            while base.hasSuffix("/") { base.removeLast() }
            return .http(base: base)
        default:
            throw SourceURLError(url: raw, reason: "unknown scheme '\(scheme)://'; use one of \(schemes.map { $0 + "://" }.joined(separator: ", "))")
        }
    }

    private static func trimSlashes(_ s: String) -> String {
        var s = Substring(s)
        while s.hasPrefix("/") { s = s.dropFirst() }
        while s.hasSuffix("/") { s = s.dropLast() }
        return String(s)
    }

    private static func isRepoSegment(_ s: Substring) -> Bool {
        s.utf8.allSatisfy { $0.isASCIIAlphanumeric || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    /// S3 bucket naming rules, loosely: 3-63 characters of a-z, 0-9, '.', '-'.
    private static func bucketProblem(_ bucket: String) -> String? {
        if bucket.isEmpty { return "the bucket name is empty (expected s3://bucket/prefix)" }
        guard (3...63).contains(bucket.utf8.count),
              bucket.utf8.allSatisfy({ $0.isASCIILowerAlphanumeric || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }),
              bucket.utf8.first?.isASCIILowerAlphanumeric == true
        else { return "bucket '\(bucket)' is not a valid S3 bucket name (3-63 characters of a-z, 0-9, '.', '-')" }
        return nil
    }
}

/// A source URL that cannot be used, and why.
public struct SourceURLError: Error, Sendable, Equatable, CustomStringConvertible {
    public let url: String
    public let reason: String
    public var description: String { "source '\(url)': \(reason)" }
}
