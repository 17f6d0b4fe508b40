import Foundation
import WanCore
import WanSources
import WanSystem

/// Connections opened before the first read.
extension CacheEngine {
    /// Opens connections to each remote host the manifest's sources read from (http(s)
    /// mirrors, the S3 bucket's host, the Hub), ahead of the first read: `perHost` HEAD requests of the
    /// host's root at once (default: the parallel requests one file may make of a source,
    /// at most 8), on a thread of its own, without credentials. The pooled connections stay
    /// open for the next requests to that host, so the first reads of a load (the reader's,
    /// and the hydration that starts beside it) skip the TCP and TLS handshakes. Best effort:
    /// a host that does not answer is the first read's to report. Returns the hosts it asks;
    /// `done` is called with the connections it opened once it has.
    @discardableResult
    public func warmConnections(perHost: Int? = nil, done: (@Sendable (Int) -> Void)? = nil) -> [String] {
        let targets = warmTargets()
        guard !targets.isEmpty else { return [] }
        let (cancel, engine, timeout) = (transfers, sources.client.engine, min(config.requestTimeout, 10))
        let connections = perHost ?? min(config.maxConnectionsPerSource, 8)
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

    /// The hosts the manifest's sources read from, each as `scheme://authority/`, sorted: as
    /// each source's backend addresses it (an S3 bucket with virtual-host addressing is a host
    /// of its own; the default AWS endpoint when none is configured). A source whose backend
    /// cannot be made is left to its first read to report.
    func warmTargets() -> [String] {
        var hosts = Set<String>()
        for model in registry.manifest.models {
            for source in model.sources {
                guard let url = (try? sources.backend(for: source))?.connectionURL, let host = Self.root(of: url) else { continue }
                hosts.insert(host)
            }
        }
        return hosts.sorted()
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
