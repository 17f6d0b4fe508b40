import WanCore

/// Builds the backend for each manifest source from the configuration.
public struct SourceFactory: Sendable {
    public let config: OrchestratorConfig
    /// Root of relative `local://` sources.
    public let localRoot: String
    public let client: HTTPClient

    public init(config: OrchestratorConfig, manifestDirectory: String, engine: HTTPEngine = .shared) {
        self.config = config
        self.localRoot = config.localSourceRoot(manifestDirectory: manifestDirectory)
        self.client = HTTPClient(engine: engine, retry: RetryPolicy(config), requestTimeout: config.requestTimeout,
                                 maxBytesPerSecond: config.bandwidthLimit)
    }

    public func backend(for url: SourceURL) throws(SourceError) -> any StorageBackend {
        switch url.location {
        case .local: try LocalStore(source: url, localRoot: localRoot)
        case .s3: try S3Store(source: url, settings: S3Store.Settings(config), client: client)
        case .huggingFace: try HFStore(source: url, endpoint: config.hfEndpoint, token: config.credentials.hfToken, client: client)
        case .http: try HttpStore(source: url, headers: config.httpHeaders, client: client)
        }
    }

    /// A failover reader over a model's sources, in manifest priority order.
    public func reader(for spec: ModelSpec, health: SourceHealth = .shared) throws(SourceError) -> FailoverReader {
        var backends: [any StorageBackend] = []
        for url in spec.sources { backends.append(try backend(for: url)) }
        return FailoverReader(backends: backends, health: health)
    }
}
