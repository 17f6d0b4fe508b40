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
            response = try Self.envelope(error, id: id)
        } catch let error as any CodedError {
            response = try Self.envelope(APIError(error), id: id)
        } catch let error as HTTPError {
            response = try Self.envelope(APIError(error.status, code: Self.code(for: error.status), message: error.body ?? error.status.reasonPhrase), id: id)
        } catch {
            logger.error("request failed", metadata: ["request_id": "\(id)", "error": "\(error)"])
            response = try Self.envelope(APIError(.internalServerError, code: "INTERNAL_ERROR", message: "internal error"), id: id)
        }
        response.headers[.xRequestID] = id
        let elapsed = (ContinuousClock.now - started).components
        logger.info("\(request.method) \(request.uri.path) \(response.status.code)", metadata: [
            "request_id": "\(id)", "duration_ms": "\(elapsed.seconds * 1000 + elapsed.attoseconds / 1_000_000_000_000_000)",
        ])
        return response
    }

    static func envelope(_ error: APIError, id: String) throws -> Response {
        var response = try JSONResponse.make(ErrorEnvelope(error: .init(code: error.code, message: error.message, details: error.details,
                                                                         timestamp: Date(), requestID: id),
                                                           detail: error.message), status: error.status)
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
/// gets 403.
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
        let isUser = token.map { user in presented.map { Self.constantTimeEqual($0, user) } ?? false } ?? true
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

extension HTTPField.Name {
    static let xRequestID = Self("X-Request-ID")!
}

extension Request {
    /// The path as the router matches it: empty segments (`//api`) and a trailing `/` do not
    /// count there, so they must not count for auth and rate limits either.
    var routedPath: String { "/" + uri.path.split(separator: "/").joined(separator: "/") }
}
