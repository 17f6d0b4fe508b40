import WanCore

/// Builds the backend for each manifest source from the configuration.
public struct SourceFactory: Sendable {
    public let config: OrchestratorConfig
    /// Root of relative `local://` sources.
    public let localRoot: String
    public let client: HTTPClient

    /// - Parameter limiter: caps every transfer of these sources together; by default one
    ///   limiter at the configuration's `bandwidth_limit` (none when unset).
    public init(config: OrchestratorConfig, manifestDirectory: String, engine: HTTPEngine = .shared, limiter: BandwidthLimiter? = nil) {
        self.config = config
        self.localRoot = config.localSourceRoot(manifestDirectory: manifestDirectory)
        var client = HTTPClient(engine: engine, retry: RetryPolicy(config), requestTimeout: config.requestTimeout,
                                minRate: config.minTransferRate, maxBytesPerSecond: config.bandwidthLimit)
        if let limiter { client.limiter = limiter }
        self.client = client
    }

    public func backend(for url: SourceURL) throws(SourceError) -> any StorageBackend {
        switch url.location {
        case .local: try LocalStore(source: url, localRoot: localRoot)
        case .s3: try S3Store(source: url, settings: S3Store.Settings(config), client: client)
        case .huggingFace: try HFStore(source: url, endpoint: config.hfEndpoint, token: config.credentials.hfToken, client: client)
        case .http: try HttpStore(source: url, headers: config.httpHeaders, client: client)
        }
    }

    /// A reader over a model's sources (manifest priority order; striped when the configuration says so).
    public func reader(for spec: ModelSpec, health: SourceHealth = .shared) throws(SourceError) -> FailoverReader {
        var backends: [any StorageBackend] = []
        for url in spec.sources { backends.append(try backend(for: url)) }
        return FailoverReader(backends: backends, health: health, striping: config.stripeSources)
    }
}
