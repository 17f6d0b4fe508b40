import Foundation
import HTTPTypes
import Hummingbird
import Synchronization
import WanCore

/// The Model Availability API's rate limits: requests per minute per client, by class of route,
/// in fixed 60-second windows. Every response of a limited route carries `X-RateLimit-Limit`,
/// `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds); past the limit the
/// answer is 429 `RATE_LIMITED` with `Retry-After`.
public struct RateLimits: Sendable, Equatable {
    /// Every `/api/v1` route not in another class, and `/ws` connects.
    public var standard = 60
    /// `POST /api/v1/models/download/manage`.
    public var download = 10
    /// `PUT /api/v1/config/update` and `POST /api/v1/models/cleanup`.
    public var admin = 30
    /// The probes, `/health/models` and `/metrics`: a prober or scraper asks every few seconds,
    /// so the limit is high, but a client asking without pause is stopped.
    public var probe = 600
    /// Off: nothing is limited.
    public var enabled = true

    public init() {}

    public static let off: RateLimits = { var limits = RateLimits(); limits.enabled = false; return limits }()

    /// `off`, or `default:N,download:N,admin:N,probe:N` (any subset; the rest keep their defaults).
    public init(parsing text: String) throws(RateLimitSpecError) {
        self.init()
        if text == "off" { enabled = false; return }
        for part in text.split(separator: ",") {
            let pair = part.split(separator: ":")
            guard pair.count == 2, let value = Int(pair[1]), value >= 1 else { throw RateLimitSpecError(text: text) }
            switch pair[0] {
            case "default": standard = value
            case "download": download = value
            case "admin": admin = value
            case "probe": probe = value
            default: throw RateLimitSpecError(text: text)
            }
        }
    }

    enum Class: String { case standard = "default", download, admin, probe }

    /// The class of a route, or nil when it is not limited (a path no route serves).
    static func classify(_ method: HTTPRequest.Method, _ path: String) -> Class? {
        if path == "/api/v1/models/download/manage" && method == .post { return .download }
        if (path == "/api/v1/config/update" && method == .put) || (path == "/api/v1/models/cleanup" && method == .post) { return .admin }
        if path.hasPrefix("/api/") || path == "/ws" { return .standard }
        if path == "/metrics" || path == "/health/models" || path.hasPrefix("/health/models/") { return .probe }
        return nil
    }

    func limit(_ kind: Class) -> Int {
        switch kind {
        case .standard: standard
        case .download: download
        case .admin: admin
        case .probe: probe
        }
    }
}

public struct RateLimitSpecError: Error, CustomStringConvertible {
    let text: String
    public var description: String { "'\(text)' is not off or a list like default:60,download:10,admin:30,probe:600 (each at least 1)" }
}

/// Counts requests per (class, client) in the current minute.
final class RateLimitMiddleware: RouterMiddleware {
    typealias Context = SidecarContext
    let limits: RateLimits
    /// Seconds since 1970: the wall clock, or a test's.
    let clock: @Sendable () -> Int
    private let windows = Mutex<[String: (start: Int, count: Int)]>([:])

    init(limits: RateLimits, clock: @escaping @Sendable () -> Int = { Int(Date().timeIntervalSince1970) }) {
        self.limits = limits
        self.clock = clock
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard limits.enabled, let kind = RateLimits.classify(request.method, request.routedPath) else {
            return try await next(request, context)
        }
        let limit = limits.limit(kind)
        let now = clock()
        let window = now - now % 60
        let key = "\(kind.rawValue) \(context.clientIP)"
        let count = windows.withLock { table -> Int in
            if table.count > 10_000 { table = table.filter { $0.value.start == window } }   // forget old clients
            var entry = table[key] ?? (window, 0)
            if entry.start != window { entry = (window, 0) }
            entry.count += 1
            table[key] = entry
            return entry.count
        }
        let headers: HTTPFields = [
            .xRateLimitLimit: String(limit), .xRateLimitRemaining: String(max(0, limit - count)), .xRateLimitReset: String(window + 60),
        ]
        guard count <= limit else {
            var error = APIError(.tooManyRequests, code: "RATE_LIMITED",
                                 message: "more than \(limit) \(kind.rawValue) requests this minute; retry in \(window + 60 - now) s",
                                 details: ["class": kind.rawValue, "limit": String(limit)])
            error.headers = headers
            error.headers[.retryAfter] = String(window + 60 - now)
            throw error
        }
        do {
            var response = try await next(request, context)
            response.headers.append(contentsOf: headers)
            return response
        } catch {
            guard var failure = (error as? APIError) ?? (error as? any CodedError).map(APIError.init) else { throw error }
            failure.headers.append(contentsOf: headers)
            throw failure
        }
    }
}

extension HTTPField.Name {
    static let xRateLimitLimit = Self("X-RateLimit-Limit")!
    static let xRateLimitRemaining = Self("X-RateLimit-Remaining")!
    static let xRateLimitReset = Self("X-RateLimit-Reset")!
}
