import WanCore

/// `http://host/path` and `https://host/path`: a mirror or CDN that serves the manifest's
/// files under a base URL, with Range. Extra headers come from the config (`http_headers`);
/// they count as credentials and are not sent across a redirect to another host.
public struct HttpStore: StorageBackend {
    public let source: SourceURL
    public let base: String
    public let headers: [(name: String, value: String)]
    public let client: HTTPClient
    public var displayName: String { base }
    public var usesCredentials: Bool { !headers.isEmpty }

    public init(source: SourceURL, headers: [String: String] = [:], client: HTTPClient) throws(SourceError) {
        guard case .http(let base) = source.location else {
            throw SourceError(.misconfigured, source: source.raw, message: "not an http(s):// source")
        }
        self.source = source
        self.base = base
        self.headers = headers.sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
        var client = client
        client.credentialHeaders.formUnion(headers.keys.map { $0.lowercased() })
        self.client = client
    }

    func url(_ path: String) -> String { base + "/" + PercentEncoding.encodePath(path) }

    public var connectionURL: String? { base }

    public func stat(_ path: String, cancel: CancellationToken) throws(SourceError) -> RemoteFile {
        let source = displayName
        let response = try client.send(HTTPRequest(.head, url: url(path), headers: headers), cancel: cancel) {
            HTTPClient.standardClassification(source: source, path: path, $0)
        }
        guard let size = response.header("content-length").flatMap({ Int64(strictDecimal: $0) }) else {
            throw SourceError(.protocolViolation, source: source, message: "HEAD \(path) gave no usable Content-Length", status: response.status)
        }
        return RemoteFile(path: path, size: size, etag: response.header("etag"))
    }

    public func read(_ path: String, range: Range<Int64>, fileSize: Int64?, into sink: any ByteSink,
                     cancel: CancellationToken) throws(SourceError) {
        var request = HTTPRequest(.get, url: url(path), headers: headers)
        request.fileSize = fileSize
        let source = displayName
        try client.read(request, range: range, into: sink, cancel: cancel) {
            HTTPClient.standardClassification(source: source, path: path, $0)
        }
    }

    public func list(prefix: String, cancel: CancellationToken) throws(SourceError) -> [RemoteFile] {
        throw SourceError(.unsupported, source: displayName, message: "an HTTP mirror cannot list files; the manifest must name them")
    }
}
