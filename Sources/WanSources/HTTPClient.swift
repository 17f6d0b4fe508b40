import Foundation
import Synchronization

/// The HTTP behaviour every HTTP-based store shares, on top of ``HTTPEngine``: redirects
/// (http and https only, never from https down to http, credentials dropped when the host
/// changes), retries with backoff, ranged reads that resume where a broken transfer stopped,
/// and the timeouts of the configuration.
public struct HTTPClient: Sendable {
    public let engine: HTTPEngine
    public let retry: RetryPolicy
    /// Per-request budgets (`request_timeout`).
    public var connectTimeout: Double
    public var stallTimeout: Double
    /// Bytes per second below which a transfer counts as stalled (`min_transfer_rate`).
    public var minRate: Int64
    /// Caps the receive rate of every transfer of this client, together.
    public var limiter: BandwidthLimiter?
    /// Headers that must never follow a redirect to another host.
    public var credentialHeaders: Set<String> = ["authorization", "x-amz-security-token"]

    public init(engine: HTTPEngine = .shared, retry: RetryPolicy = RetryPolicy(), requestTimeout: Double = 30,
                minRate: Int64 = 16 * 1024, maxBytesPerSecond: Int64? = nil) {
        self.engine = engine
        self.retry = retry
        self.connectTimeout = requestTimeout
        self.stallTimeout = requestTimeout
        self.minRate = minRate
        self.limiter = maxBytesPerSecond.map { BandwidthLimiter(bytesPerSecond: $0) }
    }

    /// Decides what a response means: nil accepts it, an error rejects it (and is retried
    /// if ``SourceError/isRetryable``).
    public typealias Classifier = @Sendable (HTTPResponse) -> SourceError?

    /// Sends `request` (following up to 5 redirects unless `followRedirects` is false, in
    /// which case a redirect goes to `classify` like any response), retrying per the policy,
    /// and returns the accepted response.
    public func send(_ request: HTTPRequest, into sink: (any ByteSink)? = nil, followRedirects: Bool = true,
                     cancel: CancellationToken, classify: Classifier) throws(SourceError) -> HTTPResponse {
        try retry.run(cancel: cancel) { _ throws(SourceError) in
            try sendOnce(request, into: sink, followRedirects: followRedirects, cancel: cancel, classify: classify)
        }
    }

    /// Reads `range` into `sink`. A transfer that breaks part-way is resumed from the first
    /// byte not yet written, so a retry never fetches a byte twice.
    public func read(_ request: HTTPRequest, range: Range<Int64>, into sink: any ByteSink, cancel: CancellationToken,
                     classify: Classifier) throws(SourceError) {
        guard !range.isEmpty, range.lowerBound >= 0 else {
            throw SourceError(.invalidRange, source: redacted(request.url),
                              message: "empty or negative range \(range.lowerBound)..<\(range.upperBound): nothing to fetch")
        }
        let progress = ProgressSink(sink, start: range.lowerBound)
        try retry.run(cancel: cancel) { _ throws(SourceError) in
            // The last try may have delivered every byte before failing.
            if progress.position >= range.upperBound { return }
            var attempt = request
            attempt.range = progress.position..<range.upperBound
            _ = try sendOnce(attempt, into: progress, cancel: cancel, classify: classify)
        }
    }

    private func sendOnce(_ original: HTTPRequest, into sink: (any ByteSink)?, followRedirects: Bool = true,
                          cancel: CancellationToken, classify: Classifier) throws(SourceError) -> HTTPResponse {
        var request = original
        request.connectTimeout = connectTimeout
        request.stallTimeout = stallTimeout
        request.minRate = minRate
        request.limiter = request.limiter ?? limiter
        for _ in 0...5 {
            let response = try engine.perform(request, into: sink, cancel: cancel)
            if followRedirects, [301, 302, 303, 307, 308].contains(response.status), let location = response.header("location") {
                request = try redirect(request, to: location)
                continue
            }
            if let error = classify(response) { throw error }
            return response
        }
        throw SourceError(.protocolViolation, source: redacted(original.url), message: "more than 5 redirects")
    }

    /// The request re-aimed at `location`; credential headers are dropped when the host changes.
    /// - Throws: a `.protocolViolation` for a scheme other than http and https, or https to http.
    func redirect(_ request: HTTPRequest, to location: String) throws(SourceError) -> HTTPRequest {
        var next = request
        next.url = try HTTPClient.followable(location, from: request.url)
        if HTTPClient.authority(of: next.url) != HTTPClient.authority(of: request.url) {
            next.headers = request.headers.filter { !credentialHeaders.contains($0.name.lowercased()) }
        }
        return next
    }

    /// Where a redirect (or a paging link) from `base` to `location` leads, if wanfs may go
    /// there: http or https only, and never from https down to http.
    public static func followable(_ location: String, from base: String) throws(SourceError) -> String {
        let target = resolve(location, against: base)
        let scheme = target.prefix { $0 != ":" }.lowercased()
        guard target.contains("://"), scheme == "http" || scheme == "https" else {
            throw SourceError(.protocolViolation, source: redacted(base),
                              message: "refusing a redirect to '\(redacted(target).prefix(100))': only http and https are fetched")
        }
        if base.lowercased().hasPrefix("https:") && scheme == "http" {
            throw SourceError(.protocolViolation, source: redacted(base),
                              message: "refusing a redirect from https down to http (\(redacted(target).prefix(100)))")
        }
        return target
    }

    /// `scheme://host:port` of a URL.
    static func authority(of url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        return String(url[..<schemeEnd.upperBound]) + rest.prefix { $0 != "/" && $0 != "?" }.lowercased()
    }

    /// Resolves a Location header (absolute, scheme-relative or path) against the request URL.
    static func resolve(_ location: String, against base: String) -> String {
        // An absolute URL starts with a scheme (letters, digits, + - .) and a colon: `file:/x`
        // and `gopher:x` are absolute too, and must be seen as such to be refused.
        if let colon = location.firstIndex(of: ":"), !location[..<colon].isEmpty,
           location[..<colon].allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }),
           location.first?.isLetter == true {
            return location
        }
        if location.hasPrefix("//"), let colon = base.firstIndex(of: ":") { return base[..<colon] + ":" + location }
        if location.hasPrefix("/") { return authority(of: base) + location }
        var directory = base
        if let query = directory.firstIndex(of: "?") { directory = String(directory[..<query]) }
        if let slash = directory.lastIndex(of: "/") { directory = String(directory[...slash]) }
        return directory + location
    }

    /// The usual meaning of a status for a file read: 2xx accepted, everything else an error.
    public static func standardClassification(source: String, path: String, _ response: HTTPResponse) -> SourceError? {
        let retryAfter = RetryPolicy.parseRetryAfter(response.header("retry-after"))
        switch response.status {
        case 200..<300: return nil
        case 404, 410: return SourceError(.notFound, source: source, message: "\(path) not found", status: response.status)
        case 401: return SourceError(.unauthorized, source: source, message: "authentication required or credentials rejected for \(path)", status: 401)
        case 403: return SourceError(.forbidden, source: source, message: "access to \(path) is forbidden", status: 403)
        case 416: return SourceError(.invalidRange, source: source, message: "the requested range is outside \(path)", status: 416)
        case 408: return SourceError(.timeout, source: source, message: "the server timed out the request", status: 408)
        case 429, 503:
            return SourceError(.throttled, source: source, message: "the server asked us to slow down" + (retryAfter.map { " (Retry-After \($0) s)" } ?? ""),
                               status: response.status, retryAfter: retryAfter)
        case 500..<600: return SourceError(.serverError, source: source, message: "server error", status: response.status)
        case 300..<400: return SourceError(.misconfigured, source: source, message: "redirect without a usable Location", status: response.status)
        default: return SourceError(.misconfigured, source: source, message: "unexpected response to the request for \(path)", status: response.status)
        }
    }
}

/// Wraps a sink and remembers how far the current range has been written, so a retry can
/// start at the first missing byte. Writes within one transfer arrive in order.
final class ProgressSink: ByteSink {
    private let inner: any ByteSink
    private let written: Atomic<Int64>

    init(_ inner: any ByteSink, start: Int64) {
        self.inner = inner
        self.written = Atomic(start)
    }

    var position: Int64 { written.load(ordering: .acquiring) }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        try inner.write(bytes, at: offset)
        written.store(offset + Int64(bytes.count), ordering: .releasing)
    }
}
