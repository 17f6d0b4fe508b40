import Foundation
import HTTPTypes
import Hummingbird
import Logging
import WanCore

/// Gives every request an id (the client's `X-Request-ID`, or a new `req_…`), echoes it, logs
/// the request with it, and turns every error into the envelope with that id.
struct EnvelopeMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let id = request.headers[.xRequestID] ?? generatedID("req")
        let started = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = try Self.envelope(error, id: id, request: request, context: context)
        } catch let error as any CodedError {
            response = try Self.envelope(APIError(error), id: id, request: request, context: context)
        } catch let error as HTTPError {
            response = try Self.envelope(APIError(error.status, code: Self.code(for: error.status), message: error.body ?? error.status.reasonPhrase),
                                         id: id, request: request, context: context)
        } catch {
            logger.error("request failed", metadata: ["request_id": "\(id)", "error": "\(error)"])
            response = try Self.envelope(APIError(.internalServerError, code: "INTERNAL_ERROR", message: "internal error"),
                                         id: id, request: request, context: context)
        }
        response.headers[.xRequestID] = id
        let elapsed = (ContinuousClock.now - started).components
        logger.info("\(request.method) \(request.uri.path) \(response.status.code)", metadata: [
            "request_id": "\(id)", "duration_ms": "\(elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000)",
        ])
        return response
    }

    static func envelope(_ error: APIError, id: String, request: Request, context: Context) throws -> Response {
        let envelope = ErrorEnvelope(error: .init(code: error.code, message: error.message, details: error.details, timestamp: Date(), requestID: id),
                                     detail: error.message)
        var response = try envelope.with(status: error.status).response(from: request, context: context)
        if error.status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
        response.headers.append(contentsOf: error.headers)
        return response
    }

    static func code(for status: HTTPResponse.Status) -> String {
        switch status {
        case .notFound: "NOT_FOUND"
        case .methodNotAllowed: "METHOD_NOT_ALLOWED"
        case .badRequest: "BAD_REQUEST"
        case .unauthorized: "UNAUTHORIZED"
        case .forbidden: "FORBIDDEN"
        default: "HTTP_\(status.code)"
        }
    }
}

/// With a token configured, every `/api/v1` route and `/ws` need `Authorization: Bearer TOKEN`
/// (`/ws` also takes `?token=`, since browsers cannot set headers on a WebSocket).
/// `/health/models` and `/metrics` stay open (probes and scrapers) unless `protectProbes`. With an admin token too,
/// the admin routes (`PUT /config/update`, `POST /models/cleanup`) need it: the user token
/// gets 403. With an admin token alone, every route needs it: an admin token never opens the
/// user routes to everyone.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?
    let adminToken: String?
    var protectProbes = false

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.routedPath
        let probe = path == "/metrics" || path == "/health/models" || path.hasPrefix("/health/models/")
        guard path.hasPrefix("/api/") || path == "/ws" || (protectProbes && probe) else { return try await next(request, context) }
        let presented = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
            ?? (path == "/ws" ? request.uri.queryParameters["token"].map(String.init) : nil)
        let isAdmin = adminToken.map { admin in presented.map { Self.constantTimeEqual($0, admin) } ?? false } ?? false
        let isUser = token.map { user in presented.map { Self.constantTimeEqual($0, user) } ?? false } ?? false
        guard isAdmin || isUser else {
            throw APIError(.unauthorized, code: "UNAUTHORIZED", message: "a valid bearer token is required (Authorization: Bearer ...)")
        }
        if adminToken != nil, !isAdmin, RateLimits.classify(request.method, path) == .admin {
            throw APIError(.forbidden, code: "FORBIDDEN", message: "\(request.method) \(path) needs the admin token")
        }
        return try await next(request, context)
    }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { difference |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return difference == 0
    }
}

/// Without a token, the API answers only requests meant for this machine: the `Host` must be a
/// loopback name (`localhost`, `127.0.0.0/8`, `::1`) or the listen address, so a web page cannot
/// reach the API by pointing a name of its own at 127.0.0.1 (DNS rebinding); and a request that
/// changes something, or a WebSocket to `/ws`, sent by a web page (it carries `Origin`), is
/// refused unless that page is served from one of those names too. Both are 403 `FORBIDDEN`.
struct LocalOnlyMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The listen address's host, lower-cased, without brackets.
    let listenHost: String

    init(listenHost: String) { self.listenHost = LocalNames.bare(listenHost) }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // HTTP/1's Host arrives as the authority; a Host field beside it must name a local host too.
        for host in [request.head.authority].compactMap({ $0 }) + request.headers[values: .hostField] {
            guard let name = LocalNames.hostName(ofAuthority: host), isLocal(name) else {
                throw APIError(.forbidden, code: "FORBIDDEN",
                               message: "requests for '\(host)' are not answered without a token: only localhost, 127.0.0.1, ::1 and the listen address are (start wan serve with --auth-token-file to answer other names)")
            }
        }
        // A browser opens a WebSocket to any site without asking: the events are for this machine's pages only.
        if Self.changesState(request.method) || request.routedPath == "/ws", let origin = request.headers[.origin] {
            guard let components = URLComponents(string: origin), ["http", "https"].contains(components.scheme?.lowercased() ?? ""),
                  let name = components.host.map(LocalNames.bare), isLocal(name) else {
                throw APIError(.forbidden, code: "FORBIDDEN",
                               message: "\(request.method) \(request.routedPath) from the web page at '\(origin)' is refused without a token: only pages on localhost or the listen address may change anything or follow events")
            }
        }
        return try await next(request, context)
    }

    func isLocal(_ name: String) -> Bool { name == listenHost || LocalNames.isLoopback(name) }

    static func changesState(_ method: HTTPRequest.Method) -> Bool { ![.get, .head, .options].contains(method) }
}

/// Host names as the local-only rule reads them.
enum LocalNames {
    /// `localhost` (and names under it), an IPv4 address in 127.0.0.0/8, or `::1`.
    static func isLoopback(_ name: String) -> Bool {
        if name == "localhost" || name.hasSuffix(".localhost") || name == "::1" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// The host of a `Host` header value (`name`, `name:port`, `[v6]:port`), bare; nil when it
    /// is not one.
    static func hostName(ofAuthority authority: String) -> String? {
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            let rest = authority[authority.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && UInt16(rest.dropFirst()) != nil) else { return nil }
            return bare(String(authority[authority.index(after: authority.startIndex)..<close]))
        }
        let parts = authority.split(separator: ":", omittingEmptySubsequences: false)
        guard !parts[0].isEmpty, parts.count <= 2, parts.count == 1 || UInt16(parts[1]) != nil else { return nil }
        return bare(String(parts[0]))
    }

    /// Lower-cased, without brackets or a trailing dot.
    static func bare(_ host: String) -> String {
        var name = host.lowercased()
        if name.hasPrefix("[") && name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if name.hasSuffix(".") { name.removeLast() }
        return name
    }
}

extension HTTPField.Name {
    static let xRequestID = Self("X-Request-ID")!
    static let hostField = Self("Host")!
}

extension Request {
    /// The path as the router matches it: empty segments (`//api`) and a trailing `/` do not
    /// count there, so they must not count for auth and rate limits either.
    var routedPath: String { "/" + uri.path.split(separator: "/").joined(separator: "/") }
}
