import Foundation

/// Secrets, read from the environment only and never printed, logged or persisted.
public struct Credentials: Sendable, Equatable, CustomStringConvertible {
    public var hfToken: String?
    public var awsAccessKeyID: String?
    public var awsSecretAccessKey: String?
    public var awsSessionToken: String?

    public init(hfToken: String? = nil, awsAccessKeyID: String? = nil, awsSecretAccessKey: String? = nil,
                awsSessionToken: String? = nil) {
        self.hfToken = hfToken
        self.awsAccessKeyID = awsAccessKeyID
        self.awsSecretAccessKey = awsSecretAccessKey
        self.awsSessionToken = awsSessionToken
    }

    /// Which secrets are set, without their values.
    public var description: String {
        func mark(_ name: String, _ value: String?) -> String { "\(name)=\(value == nil ? "unset" : "set")" }
        return [mark("HF_TOKEN", hfToken), mark("AWS_ACCESS_KEY_ID", awsAccessKeyID),
                mark("AWS_SECRET_ACCESS_KEY", awsSecretAccessKey), mark("AWS_SESSION_TOKEN", awsSessionToken)]
            .joined(separator: " ")
    }

    /// Every secret value that is set, so log and error text can be scrubbed of them.
    public var secretValues: [String] {
        [hfToken, awsAccessKeyID, awsSecretAccessKey, awsSessionToken].compactMap { $0 }.filter { !$0.isEmpty }
    }
}

/// Everything the orchestrator is configured with (seed 000's `OrchestratorConfig`).
///
/// Sources, lowest precedence first: built-in defaults, the config file (`--config` or
/// `WAN_CONFIG`, TOML with the snake_case keys below), environment variables, then
/// command-line flags. Secrets come from the environment only.
public struct OrchestratorConfig: Sendable, Equatable {
    /// MODELS_ROOT; required by everything that reads or writes the cache.
    public var modelsRoot: String?
    /// The manifest (`WAN_MODELS_MANIFEST`, `manifest_path`).
    public var manifestPath: String
    /// Root for `local://relative` sources (`WAN_LOCAL_ROOT`, `local_root`); nil means the manifest's folder.
    public var localRoot: String?
    /// The config file that was read, if any.
    public var configFile: String?

    public var maxConcurrentDownloads = 4
    /// Whole-download budget in seconds.
    public var downloadTimeout: Double = 3600
    /// Per-request budget in seconds (connect + a stalled transfer); `timeout=` on the mount.
    public var requestTimeout: Double = 30
    /// The slowest a transfer may be (bytes per second, averaged over `request_timeout`) before
    /// it counts as stalled and is retried or failed over (`min_transfer_rate`).
    public var minTransferRate: Int64 = 16 * 1024
    /// The longest one read through the mount waits for its bytes, whatever the retries
    /// (`read_timeout`; `read_timeout=` on the mount). Then it fails with EIO.
    public var readTimeout: Double = 60
    /// Seconds before content found bad at every source is tried again (`corrupt_retry_interval`).
    public var corruptRetryInterval: Double = 60
    public var retryAttempts = 3
    public var retryBackoffFactor = 2.0
    /// Parallel connections per source for one large file.
    public var maxConnectionsPerSource = 8
    /// Spread one file's range requests over all of its healthy sources in proportion to their
    /// measured rates, and move a request that runs far past its source's usual time to another
    /// (`stripe_sources`); false: sources are used in manifest priority order, one at a time.
    public var stripeSources = true
    /// Bytes per range request when the manifest gives no chunk_size.
    public var chunkSize: Int64 = 16 * 1024 * 1024
    /// Bytes per second across all downloads; nil is unlimited.
    public var bandwidthLimit: Int64?
    public var enableGarbageCollection = true
    public var maxTotalSize: Int64?
    /// Seconds since last access after which an unpinned model may be collected.
    public var maxModelAge: Double?
    public var hfCacheDir: String?
    public var hfEndpoint = "https://huggingface.co"
    public var s3EndpointURL: String?
    public var s3Region = "us-east-1"
    public var s3ForcePathStyle = false
    /// Extra headers sent to `http(s)://` sources (e.g. an internal mirror's API key name → value).
    public var httpHeaders: [String: String] = [:]
    public var enableMetrics = true
    /// Threads the sidecar runs blocking work on (the cache's status, disk walks, the state
    /// database, GC, verification): one bounded pool; work beyond it waits its turn
    /// (`sidecar_blocking_threads`).
    public var sidecarBlockingThreads = 16
    public var logLevel = "INFO"
    public var credentials = Credentials()

    public init(modelsRoot: String? = nil, manifestPath: String = "models.toml") {
        self.modelsRoot = modelsRoot
        self.manifestPath = manifestPath
    }

    /// The resolver for MODELS_ROOT, or a clear error when it is not set.
    public func resolver() throws(OrchestratorError) -> ModelResolver {
        guard let modelsRoot, !modelsRoot.isEmpty else {
            throw .configInvalid(key: "MODELS_ROOT", message: "not set; export MODELS_ROOT=/path/to/models or pass --models-root")
        }
        return ModelResolver(modelsRoot: modelsRoot)
    }

    /// The root `local://relative` sources resolve against.
    public func localSourceRoot(manifestDirectory: String) -> String { localRoot ?? manifestDirectory }

    // MARK: - Loading

    /// Builds the configuration from defaults, the config file, the environment and explicit overrides.
    ///
    /// - Parameters:
    ///   - environment: usually `ProcessInfo.processInfo.environment`.
    ///   - configPath: `--config`; falls back to `WAN_CONFIG`.
    ///   - modelsRoot: `--models-root`; wins over everything.
    ///   - manifestPath: `--manifest`; wins over everything.
    public static func load(environment: [String: String], configPath: String? = nil,
                            modelsRoot: String? = nil, manifestPath: String? = nil) throws(OrchestratorError) -> OrchestratorConfig {
        var config = OrchestratorConfig(manifestPath: "")
        if let path = configPath ?? environment["WAN_CONFIG"].nonEmpty {
            try config.apply(configFile: path)
            config.configFile = URL(fileURLWithPath: path).standardizedFileURL.path
        }
        let manifestFromFile = config.manifestPath.isEmpty ? nil : config.manifestPath
        try config.apply(environment: environment)

        if let modelsRoot { config.modelsRoot = modelsRoot }
        if let explicit = manifestPath ?? environment["WAN_MODELS_MANIFEST"].nonEmpty ?? manifestFromFile {
            config.manifestPath = explicit
        } else {
            config.manifestPath = defaultManifestPath(modelsRoot: config.modelsRoot)
        }
        config.manifestPath = URL(fileURLWithPath: config.manifestPath).standardizedFileURL.path
        return config
    }

    /// `./models.toml` when it exists, else `$MODELS_ROOT/models.toml`.
    static func defaultManifestPath(modelsRoot: String?) -> String {
        let local = FileManager.default.currentDirectoryPath + "/models.toml"
        if FileManager.default.fileExists(atPath: local) || modelsRoot == nil { return local }
        return modelsRoot! + "/models.toml"
    }

    /// Keys accepted in a config file.
    public static let fileKeys: Set<String> = [
        "models_root", "manifest_path", "local_root", "max_concurrent_downloads", "download_timeout",
        "request_timeout", "retry_attempts", "retry_backoff_factor", "max_connections_per_source", "chunk_size",
        "bandwidth_limit", "enable_garbage_collection", "max_total_size", "max_model_age", "hf_cache_dir",
        "hf_endpoint", "s3_endpoint_url", "s3_region", "s3_force_path_style", "http_headers", "enable_metrics",
        "log_level", "min_transfer_rate", "read_timeout", "corrupt_retry_interval", "sidecar_blocking_threads",
    ]

    mutating func apply(configFile path: String) throws(OrchestratorError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw .configInvalid(key: "config file \(path)", message: "cannot be read: \((error as NSError).localizedDescription)")
        }
        let table: [String: ManifestValue]
        do {
            table = try ManifestValue.parseTOML(text)
        } catch {
            throw .configInvalid(key: "config file \(path)", message: error.description)
        }
        for (key, value) in table.sorted(by: { $0.key < $1.key }) {
            try apply(key: key, value: value, origin: path)
        }
    }

    /// Applies one config-file key. Also used by the sidecar's `PUT /config/update`.
    public mutating func apply(key: String, value: ManifestValue, origin: String) throws(OrchestratorError) {
        let name = "\(key) (in \(origin))"
        func bad(_ expected: String) -> OrchestratorError {
            .configInvalid(key: name, message: "expected \(expected), found \(value.typeName)")
        }
        func string() throws(OrchestratorError) -> String {
            guard let s = value.stringValue else { throw bad("a string") }
            return s
        }
        func integer(_ range: ClosedRange<Int64>) throws(OrchestratorError) -> Int {
            guard let n = value.integerValue else { throw bad("an integer") }
            guard range.contains(n) else {
                throw .configInvalid(key: name, message: "must be between \(range.lowerBound) and \(range.upperBound), found \(n)")
            }
            return Int(n)
        }
        func number(min: Double, max: Double = 1e9) throws(OrchestratorError) -> Double {
            guard let n = value.numberValue else { throw bad("a number") }
            guard n >= min, n <= max, n.isFinite else {
                throw .configInvalid(key: name, message: "must be between \(Int(min)) and \(Int(max)), found \(n)")
            }
            return n
        }
        func bool() throws(OrchestratorError) -> Bool {
            guard let b = value.boolValue else { throw bad("true or false") }
            return b
        }
        func size(max: Int64 = 1 << 60) throws(OrchestratorError) -> Int64 {
            var bytes: Int64?
            if let n = value.integerValue, n > 0 { bytes = n }
            if let s = value.stringValue {
                do {
                    bytes = try ByteSize.parse(s)
                } catch {
                    guard case .configInvalid(_, let reason) = error else { throw error }
                    throw .configInvalid(key: name, message: "'\(s)': \(reason)")
                }
            }
            guard let bytes else { throw bad("a positive byte count or a size such as \"100GB\"") }
            guard bytes > 0, bytes <= max else {
                throw .configInvalid(key: name, message: "must be between 1 and \(ByteSize.format(max)), found \(bytes)")
            }
            return bytes
        }

        switch key {
        case "models_root": modelsRoot = try string()
        case "manifest_path": manifestPath = try string()
        case "local_root": localRoot = try string()
        case "max_concurrent_downloads": maxConcurrentDownloads = try integer(1...64)
        case "download_timeout": downloadTimeout = try number(min: 1, max: 30 * 86400)
        case "request_timeout": requestTimeout = try number(min: 1, max: 3600)
        case "min_transfer_rate": minTransferRate = try size(max: 1 << 40)
        case "read_timeout": readTimeout = try number(min: 1, max: 3600)
        case "corrupt_retry_interval": corruptRetryInterval = try number(min: 0, max: 86400)
        case "retry_attempts": retryAttempts = try integer(0...20)
        case "retry_backoff_factor": retryBackoffFactor = try number(min: 1, max: 100)
        case "max_connections_per_source": maxConnectionsPerSource = try integer(1...64)
        case "stripe_sources": stripeSources = try bool()
        case "chunk_size": chunkSize = try size(max: 1 << 30)
        case "bandwidth_limit": bandwidthLimit = try size()
        case "enable_garbage_collection": enableGarbageCollection = try bool()
        case "max_total_size": maxTotalSize = try size()
        case "max_model_age":
            if let days = value.numberValue {
                guard days.isFinite, (0...1_000_000).contains(days) else {
                    throw .configInvalid(key: name, message: "must be between 0 and 1000000 days, found \(days)")
                }
                maxModelAge = days * 86400
            } else {
                maxModelAge = try DurationText.parse(try string(), key: name)
            }
        case "hf_cache_dir": hfCacheDir = try string()
        case "hf_endpoint": hfEndpoint = try string()
        case "s3_endpoint_url": s3EndpointURL = try string()
        case "s3_region": s3Region = try string()
        case "s3_force_path_style": s3ForcePathStyle = try bool()
        case "http_headers":
            guard let table = value.tableValue else { throw bad("a table of header names to values") }
            var headers: [String: String] = [:]
            for (header, v) in table {
                guard let s = v.stringValue else {
                    throw .configInvalid(key: "\(key).\(header) (in \(origin))", message: "expected a string, found \(v.typeName)")
                }
                headers[header] = s
            }
            httpHeaders = headers
        case "enable_metrics": enableMetrics = try bool()
        case "sidecar_blocking_threads": sidecarBlockingThreads = try integer(1...256)
        case "log_level":
            let level = try string().uppercased()
            guard ["TRACE", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL"].contains(level) else {
                throw .configInvalid(key: name, message: "unknown level '\(level)'; use DEBUG, INFO, WARNING or ERROR")
            }
            logLevel = level
        default:
            let hint = ["hf_token", "aws_access_key_id", "aws_secret_access_key", "aws_session_token"].contains(key)
                ? "secrets are read from the environment only (HF_TOKEN, AWS_*), never from files"
                : "unknown key; known keys: \(Self.fileKeys.sorted().joined(separator: ", "))"
            throw .configInvalid(key: name, message: hint)
        }
    }

    mutating func apply(environment env: [String: String]) throws(OrchestratorError) {
        if let v = env["MODELS_ROOT"].nonEmpty { modelsRoot = v }
        if let v = env["WAN_LOCAL_ROOT"].nonEmpty { localRoot = v }
        if let v = env["HF_ENDPOINT"].nonEmpty { hfEndpoint = v }
        if let v = env["HF_HOME"].nonEmpty, hfCacheDir == nil { hfCacheDir = v }
        if let v = env["AWS_ENDPOINT_URL_S3"].nonEmpty ?? env["AWS_ENDPOINT_URL"].nonEmpty { s3EndpointURL = v }
        if let v = env["AWS_REGION"].nonEmpty ?? env["AWS_DEFAULT_REGION"].nonEmpty { s3Region = v }
        if let v = env["AWS_S3_FORCE_PATH_STYLE"].nonEmpty {
            guard let flag = Self.parseBool(v) else {
                throw .configInvalid(key: "AWS_S3_FORCE_PATH_STYLE", message: "expected 1/0, true/false or yes/no, found '\(v)'")
            }
            s3ForcePathStyle = flag
        }
        if let v = env["WAN_LOG_LEVEL"].nonEmpty {
            try apply(key: "log_level", value: .string(v), origin: "WAN_LOG_LEVEL")
        }
        credentials = Credentials(
            hfToken: env["HF_TOKEN"].nonEmpty ?? env["HUGGING_FACE_HUB_TOKEN"].nonEmpty,
            awsAccessKeyID: env["AWS_ACCESS_KEY_ID"].nonEmpty,
            awsSecretAccessKey: env["AWS_SECRET_ACCESS_KEY"].nonEmpty,
            awsSessionToken: env["AWS_SESSION_TOKEN"].nonEmpty)
    }

    static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "1", "true", "yes", "on": true
        case "0", "false", "no", "off": false
        default: nil
        }
    }
}

extension Optional where Wrapped == String {
    /// The string, or nil when it is nil or empty.
    var nonEmpty: String? {
        guard let self, !self.isEmpty else { return nil }
        return self
    }
}
