import CCurl

/// Process-wide libcurl facts and one-time initialization.
public enum CurlLibrary {
    /// Initializes libcurl once per process (curl_global_init is not thread-safe to race).
    public static let initialized: Bool = {
        curl_global_init(Int(CURL_GLOBAL_ALL)) == CURLE_OK
    }()

    /// What the linked libcurl reports about itself.
    public struct Info: Sendable, Hashable {
        public let version: String
        public let sslVersion: String?
        public let supportsHTTP2: Bool
        public let protocols: [String]
    }

    public static var info: Info {
        _ = initialized
        let data = wan_curl_version_info().pointee
        var protocols: [String] = []
        if var cursor = data.protocols {
            while let name = cursor.pointee {
                protocols.append(String(cString: name))
                cursor += 1
            }
        }
        return Info(version: String(cString: data.version),
                    sslVersion: data.ssl_version.map { String(cString: $0) },
                    supportsHTTP2: data.features & CURL_VERSION_HTTP2 != 0,
                    protocols: protocols)
    }
}
