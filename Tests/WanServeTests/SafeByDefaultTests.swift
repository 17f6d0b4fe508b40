import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Synchronization
import Testing
@testable import WanServe

/// On a shared host the sidecar is safe by default: without a token it answers only requests
/// meant for this machine, a web page cannot change anything, bodies are JSON only, an admin
/// token alone keeps every route closed, and the probes are rate-limited.
@Suite struct SafeByDefaultTests {
    static let json: HTTPFields = [.contentType: "application/json"]

    @Test func withoutATokenOnlyLocalHostNamesAreAnswered() async throws {
        try await SidecarFixture().test { client in
            for host in ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "127.0.0.2", "LOCALHOST."] {
                try await client.execute(uri: "/api/v1/models/status/detailed", method: .get, headers: [.hostField: host]) { response in
                    #expect(response.status == .ok, "Host: \(host)")
                }
            }
            // DNS rebinding: a name the attacker controls, pointed at 127.0.0.1.
            for host in ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::1", "localhost:8000:1", ""] {
                try await client.execute(uri: "/api/v1/models/status/detailed", method: .get, headers: [.hostField: host]) { response in
                    #expect(response.status == .forbidden && response.errorCode == "FORBIDDEN", "Host: \(host): \(response.status)")
                }
            }
            try await client.execute(uri: "/health/models", method: .get, headers: [.hostField: "evil.example"]) { response in
                #expect(response.status == .forbidden, "the probes too")
            }
        }
    }

    @Test func theListenAddressIsAnsweredToo() async throws {
        try await SidecarFixture(listenHost: "::1").test { client in
            try await client.execute(uri: "/health/models", method: .get, headers: [.hostField: "[::1]:9000"]) { #expect($0.status == .ok) }
        }
    }

    @Test func withoutATokenAWebPageElsewhereCannotChangeAnything() async throws {
        try await SidecarFixture().test { client in
            let body = ByteBuffer(string: #"{"model_id": "app@1.0", "action": "pause"}"#)
            for origin in ["https://evil.example", "http://localhost.evil.example", "null", "file://", "http://127.0.0.1.evil.example:8000"] {
                var headers = Self.json
                headers[.origin] = origin
                try await client.execute(uri: "/api/v1/models/download/manage", method: .post, headers: headers, body: body) { response in
                    #expect(response.status == .forbidden && response.text.contains("web page"), "Origin: \(origin): \(response.status) \(response.text)")
                }
                // Nor follow the events (browsers open WebSockets to any site without asking).
                try await client.execute(uri: "/ws", method: .get, headers: [.origin: origin]) { response in
                    #expect(response.status == .forbidden, "/ws from \(origin): \(response.status)")
                }
                // Reading is not changing: a page may read (the browser keeps the answer from it without CORS).
                try await client.execute(uri: "/api/v1/models/status/detailed", method: .get, headers: [.origin: origin]) { #expect($0.status == .ok) }
            }
            var local = Self.json
            local[.origin] = "http://localhost:8000"
            try await client.execute(uri: "/api/v1/models/download/manage", method: .post, headers: local, body: body) { response in
                #expect(response.status != .forbidden, "a page on localhost may: \(response.status) \(response.text)")
            }
        }
    }

    @Test func aBodyThatIsNotJSONIs415() async throws {
        try await SidecarFixture().test { client in
            let body = ByteBuffer(string: #"{"model_id": "app@1.0", "action": "pause"}"#)
            // What a browser sends cross-site without asking first: text/plain, a form.
            for type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
                try await client.execute(uri: "/api/v1/models/download/manage", method: .post, headers: [.contentType: type], body: body) { response in
                    #expect(response.status == .unsupportedMediaType && response.errorCode == "UNSUPPORTED_MEDIA_TYPE", "\(type): \(response.status)")
                    #expect(response.text.contains(type), "names what it got: \(response.text)")
                }
            }
            try await client.execute(uri: "/api/v1/models/download/manage", method: .post, body: body) { response in
                #expect(response.status == .unsupportedMediaType, "no Content-Type at all")
            }
            for type in ["application/json", "application/json; charset=utf-8", "Application/JSON"] {
                try await client.execute(uri: "/api/v1/models/download/manage", method: .post, headers: [.contentType: type], body: body) { response in
                    #expect(response.status != .unsupportedMediaType, "\(type): \(response.status) \(response.text)")
                }
            }
        }
    }

    @Test func anAdminTokenAloneOpensNoRouteToEveryone() async throws {
        try await SidecarFixture(adminToken: "root-token").test { client in
            try await client.execute(uri: "/api/v1/models/status/detailed", method: .get) { response in
                #expect(response.status == .unauthorized, "a user route without a token: \(response.status)")
            }
            try await client.execute(uri: "/api/v1/models/status/detailed", method: .get, headers: [.authorization: "Bearer root-token"]) {
                #expect($0.status == .ok, "the admin token opens it")
            }
            try await client.execute(uri: "/api/v1/models/status/detailed", method: .get, headers: [.authorization: "Bearer other"]) {
                #expect($0.status == .unauthorized)
            }
        }
    }

    @Test func withATokenOtherHostNamesAreAnswered() async throws {
        try await SidecarFixture(token: "user-token").test { client in
            try await client.execute(uri: "/api/v1/models/status/detailed", method: .get,
                                     headers: [.hostField: "models.internal:8000", .authorization: "Bearer user-token"]) { #expect($0.status == .ok) }
        }
    }

    @Test func theProbesAreRateLimited() async throws {
        var limits = RateLimits()
        limits.probe = 3
        let now = Mutex(1_800_000_000)   // the start of a minute
        try await SidecarFixture(limits: limits).test(clock: { now.withLock { $0 } }) { client in
            for path in ["/health/models", "/metrics", "/health/models/app@1.0"] {
                try await client.execute(uri: path, method: .get) { response in
                    #expect(response.status != .tooManyRequests && response.headers[.xRateLimitLimit] == "3", "\(path): \(response.status)")
                }
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .tooManyRequests && response.errorCode == "RATE_LIMITED")
                #expect(response.headers[.retryAfter] == "60")
            }
            now.withLock { $0 += 60 }   // the next minute, without waiting for it
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test func rateLimitSpecsNameTheProbeClass() throws {
        #expect(try RateLimits(parsing: "probe:5").probe == 5)
        #expect(throws: RateLimitSpecError.self) { try RateLimits(parsing: "probe:0") }
        #expect(RateLimits().probe == 600)
    }
}
