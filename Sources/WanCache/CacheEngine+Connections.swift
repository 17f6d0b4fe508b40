import Foundation
import WanCore
import WanSources
import WanSystem

/// Connections opened before the first read.
extension CacheEngine {
    /// Opens a connection to each remote host the manifest's sources name (http(s) mirrors,
    /// the S3 endpoint, the Hub), ahead of the first read: a HEAD of the host's root on a
    /// thread of its own, without credentials. The pooled connection stays open for the next
    /// request to that host, so a first read skips the TCP and TLS handshakes. Best effort: a
    /// host that does not answer is the first read's to report. Returns the hosts it asks.
    @discardableResult
    public func warmConnections() -> [String] {
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
        let targets = hosts.sorted()
        let thread = Thread {
            ThreadName.set("wan-warm")
            for url in targets where !cancel.isCancelled {
                var request = HTTPRequest(.head, url: url)
                (request.connectTimeout, request.stallTimeout, request.totalTimeout) = (timeout, timeout, timeout)
                _ = try? engine.perform(request, cancel: cancel)
            }
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
