import Foundation
import WanCore

/// `s3://bucket/prefix` on AWS S3 or an S3-compatible server (MinIO, SeaweedFS).
///
/// - Endpoint: `AWS_ENDPOINT_URL` (or `s3_endpoint_url`), else `https://s3.<region>.amazonaws.com`.
/// - Addressing: path-style (`endpoint/bucket/key`) for IP and localhost endpoints, buckets
///   with dots, and `AWS_S3_FORCE_PATH_STYLE=1`; virtual-host style (`bucket.host/key`) otherwise.
/// - Requests are signed with SigV4 when keys are configured, anonymous otherwise.
public struct S3Store: StorageBackend {
    public struct Settings: Sendable {
        public var endpoint: String?
        public var region: String
        public var forcePathStyle: Bool
        public var accessKeyID: String?
        public var secretAccessKey: String?
        public var sessionToken: String?

        public init(endpoint: String? = nil, region: String = "us-east-1", forcePathStyle: Bool = false,
                    accessKeyID: String? = nil, secretAccessKey: String? = nil, sessionToken: String? = nil) {
            self.endpoint = endpoint
            self.region = region
            self.forcePathStyle = forcePathStyle
            self.accessKeyID = accessKeyID
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }

        public init(_ config: OrchestratorConfig) {
            self.init(endpoint: config.s3EndpointURL, region: config.s3Region, forcePathStyle: config.s3ForcePathStyle,
                      accessKeyID: config.credentials.awsAccessKeyID, secretAccessKey: config.credentials.awsSecretAccessKey,
                      sessionToken: config.credentials.awsSessionToken)
        }
    }

    public let source: SourceURL
    public let bucket: String
    public let prefix: String
    public let settings: Settings
    public let client: HTTPClient
    private let signer: SigV4Signer?
    /// `scheme://host[:port]` requests go to.
    let origin: String
    /// Whether the bucket is in the path (path-style) rather than the host name.
    let pathStyle: Bool
    /// Keys per ListObjectsV2 page (S3's maximum is 1000).
    public var listPageSize = 1000

    public var displayName: String { source.raw }
    public var usesCredentials: Bool { signer != nil }

    public init(source: SourceURL, settings: Settings, client: HTTPClient) throws(SourceError) {
        guard case .s3(let bucket, let prefix) = source.location else {
            throw SourceError(.misconfigured, source: source.raw, message: "not an s3:// source")
        }
        self.source = source
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings
        self.client = client
        if let key = settings.accessKeyID, let secret = settings.secretAccessKey {
            signer = SigV4Signer(accessKeyID: key, secretAccessKey: secret, sessionToken: settings.sessionToken, region: settings.region)
        } else {
            signer = nil
        }
        var endpoint = settings.endpoint ?? "https://s3.\(settings.region).amazonaws.com"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://") else {
            throw SourceError(.misconfigured, source: source.raw, message: "S3 endpoint '\(endpoint)' must start with http:// or https://")
        }
        let host = HTTPClient.authority(of: endpoint).split(separator: "/").last.map(String.init) ?? ""
        let hostName = host.split(separator: ":").first.map(String.init) ?? host
        let isIP = hostName.split(separator: ".").count == 4 && hostName.split(separator: ".").allSatisfy { UInt8($0) != nil }
        pathStyle = settings.forcePathStyle || isIP || hostName == "localhost" || hostName.hasPrefix("[") || bucket.contains(".")
        origin = pathStyle ? HTTPClient.authority(of: endpoint)
            : HTTPClient.authority(of: endpoint).replacingOccurrences(of: "://", with: "://\(bucket).")
    }

    /// The host reads go to: with virtual-host addressing the bucket's own name
    /// (`bucket.s3.region.amazonaws.com`), not the endpoint's.
    public var connectionURL: String? { origin + "/" }

    /// The object key of a manifest path.
    func key(_ path: String) -> String { prefix.isEmpty ? path : prefix + "/" + path }

    /// URL path (encoded) of an object, or of the bucket for `key == nil`.
    func encodedPath(key: String?) -> String {
        let object = key.map { "/" + PercentEncoding.encodePath($0) } ?? "/"
        return pathStyle ? "/\(bucket)" + (key == nil ? "" : object) : object
    }

    /// A signed request for `key` (or the bucket) with `query`.
    func request(_ method: HTTPRequest.Method, key: String?, query: [(String, String)] = []) -> HTTPRequest {
        let path = encodedPath(key: key)
        let queryText = SigV4Signer.canonicalQuery(query)
        let url = origin + path + (queryText.isEmpty ? "" : "?" + queryText)
        let host = String(origin.split(separator: "/").last ?? "")
        let headers = signer?.sign(method: method.rawValue, host: host, encodedPath: path, query: query) ?? []
        return HTTPRequest(method, url: url, headers: headers)
    }

    public func stat(_ path: String, cancel: CancellationToken) throws(SourceError) -> RemoteFile {
        let key = key(path)
        do throws(SourceError) {
            let response = try client.send(request(.head, key: key), cancel: cancel) { classify($0, key: key) }
            guard let size = response.header("content-length").flatMap({ Int64(strictDecimal: $0) }) else {
                throw SourceError(.protocolViolation, source: displayName, message: "HEAD \(key) gave no usable Content-Length")
            }
            return RemoteFile(path: path, size: size, etag: response.header("etag"))
        } catch where [SourceError.Kind.unauthorized, .forbidden, .misconfigured].contains(error.kind) {
            // HEAD answers carry no error document; a 1-byte GET fetches S3's own explanation.
            var probe = request(.get, key: key)
            probe.range = 0..<1
            _ = try client.send(probe, into: DiscardSink(), cancel: cancel) { classify($0, key: key) }
            throw error
        }
    }

    public func read(_ path: String, range: Range<Int64>, fileSize: Int64?, into sink: any ByteSink,
                     cancel: CancellationToken) throws(SourceError) {
        let key = key(path)
        var request = request(.get, key: key)
        request.fileSize = fileSize
        try client.read(request, range: range, into: sink, cancel: cancel) { classify($0, key: key) }
    }

    /// ListObjectsV2 under the source's prefix, following continuation tokens.
    public func list(prefix subPrefix: String, cancel: CancellationToken) throws(SourceError) -> [RemoteFile] {
        let fullPrefix = [prefix, subPrefix].filter { !$0.isEmpty }.joined(separator: "/")
        let listPrefix = fullPrefix.isEmpty ? "" : fullPrefix + "/"
        var files: [RemoteFile] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", listPrefix), ("max-keys", "\(listPageSize)")]
            if let token { query.append(("continuation-token", token)) }
            let sink = DataSink()
            _ = try client.send(request(.get, key: nil, query: query), into: sink, cancel: cancel) {
                classify($0, key: listPrefix)
            }
            guard let xml = XMLFields(sink.bytes) else {
                throw SourceError(.protocolViolation, source: displayName, message: "ListObjectsV2 answer is not XML")
            }
            let keys = xml.all("ListBucketResult/Contents/Key")
            let sizeTexts = xml.all("ListBucketResult/Contents/Size")
            let sizes = sizeTexts.compactMap { Int64(strictDecimal: $0) }
            let etags = xml.all("ListBucketResult/Contents/ETag")
            guard keys.count == sizeTexts.count, sizes.count == sizeTexts.count else {
                throw SourceError(.protocolViolation, source: displayName,
                                  message: "ListObjectsV2 answer has \(keys.count) keys and \(sizeTexts.count) sizes, \(sizes.count) of them usable")
            }
            for (i, key) in keys.enumerated() where !key.hasSuffix("/") {
                let relative = prefix.isEmpty ? key : String(key.dropFirst(prefix.count + 1))
                files.append(RemoteFile(path: relative, size: sizes[i], etag: i < etags.count ? etags[i] : nil))
            }
            token = xml.first("ListBucketResult/IsTruncated") == "true" ? xml.first("ListBucketResult/NextContinuationToken") : nil
        } while token != nil
        return files.sorted { $0.path < $1.path }
    }

    /// S3's status codes and error documents, turned into messages that say what to fix.
    func classify(_ response: HTTPResponse, key: String) -> SourceError? {
        if (200..<300).contains(response.status) { return nil }
        let xml = XMLFields(response.body)
        let code = xml?.first("Error/Code")
        let detail = xml?.first("Error/Message").map { ": \($0)" } ?? ""
        let object = "s3://\(bucket)/\(key)"
        let regionHint = response.header("x-amz-bucket-region") ?? xml?.first("Error/Region")
        switch (response.status, code) {
        case (_, "InvalidAccessKeyId"?), (_, "SignatureDoesNotMatch"?), (_, "InvalidToken"?), (_, "ExpiredToken"?):
            return SourceError(.unauthorized, source: displayName,
                               message: "S3 rejected the credentials (\(code!)\(detail)); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN",
                               status: response.status)
        case (_, "AuthorizationHeaderMalformed"?), (301, _), (_, "PermanentRedirect"?), (_, "IllegalLocationConstraintException"?):
            let hint = regionHint.map { "the bucket is in region '\($0)'; set AWS_REGION=\($0)" } ?? "check AWS_REGION and AWS_ENDPOINT_URL"
            return SourceError(.misconfigured, source: displayName, message: "wrong region for bucket '\(bucket)' (configured '\(settings.region)'): \(hint)",
                               status: response.status)
        case (_, "NoSuchBucket"?):
            return SourceError(.notFound, source: displayName, message: "bucket '\(bucket)' does not exist", status: response.status)
        case (404, _), (_, "NoSuchKey"?):
            return SourceError(.notFound, source: displayName, message: "\(object) not found", status: response.status)
        case (403, _):
            let why = code.map { "\($0)\(detail)" } ?? "AccessDenied"
            let credentials = signer == nil ? "no credentials are configured (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)" : "the credentials lack permission to read it"
            return SourceError(.forbidden, source: displayName, message: "access to \(object) denied (\(why)); \(credentials)", status: 403)
        case (416, _), (_, "InvalidRange"?):
            return SourceError(.invalidRange, source: displayName, message: "the requested range is outside \(object)", status: response.status)
        default:
            var error = HTTPClient.standardClassification(source: displayName, path: object, response)
            if let code, let base = error {
                error = SourceError(base.kind, source: base.source, message: "\(base.message) (\(code)\(detail))", status: base.status, retryAfter: base.retryAfter)
            }
            return error
        }
    }
}
