import Foundation
import WanCore
import WanSources
import WanSystem

/// Connections opened before the first read.
extension CacheEngine {
    /// Opens connections to each remote host the manifest's sources name (http(s) mirrors,
    /// the S3 endpoint, the Hub), ahead of the first read: `perHost` HEAD requests of the
    /// host's root at once (default: the parallel requests one file may make of a source,
    /// at most 8), on a thread of its own, without credentials. The pooled connections stay
    /// open for the next requests to that host, so the first reads of a load (the reader's,
    /// and the hydration that starts beside it) skip the TCP and TLS handshakes. Best effort:
    /// a host that does not answer is the first read's to report. Returns the hosts it asks;
    /// `done` is called with the connections it opened once it has.
    @discardableResult
    public func warmConnections(perHost: Int? = nil, done: (@Sendable (Int) -> Void)? = nil) -> [String] {
        var hosts = Set<String>()
        for model in registry.manifest.models {
            for source in model.sources {
                let base: String?
                switch source.location {
                case .local: base = nil
                case .http(let url): base = url
                case .s3: base = config.s3EndpointURL
                case .huggingFace: base = config.hfEndpoint
                }
                if let host = base.flatMap(Self.root(of:)) { hosts.insert(host) }
            }
        }
        guard !hosts.isEmpty else { return [] }
        let (cancel, engine, timeout) = (transfers, sources.client.engine, min(config.requestTimeout, 10))
        let connections = perHost ?? min(config.maxConnectionsPerSource, 8)
        let targets = hosts.sorted()
        let thread = Thread {
            ThreadName.set("wan-warm")
            var opened = 0
            for url in targets where !cancel.isCancelled {
                opened += engine.warm(url, connections: connections, timeout: timeout, cancel: cancel)
            }
            done?(opened)
        }
        thread.start()
        return targets
    }

    /// `scheme://authority/` of an http(s) URL; nil for anything else.
    static func root(of url: String) -> String? {
        guard let schemeEnd = url.range(of: "://") else { return nil }
        let scheme = url[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        let authority = url[schemeEnd.upperBound...].prefix { $0 != "/" && $0 != "?" && $0 != "#" }
        // Credentials in the authority (user:password@) are never sent ahead of a read.
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        return scheme + "://" + authority + "/"
    }
}
