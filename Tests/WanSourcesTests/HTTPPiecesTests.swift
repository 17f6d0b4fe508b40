import Foundation
import Testing
@testable import WanSources

@Suite struct HTTPPiecesTests {
    @Test func parsesContentRange() {
        #expect(ContentRange(header: "bytes 0-99/1000") == ContentRange(header: "bytes 0-99/1000"))
        #expect(ContentRange(header: "bytes 0-99/1000")?.range == 0..<100)
        #expect(ContentRange(header: "bytes 0-99/1000")?.total == 1000)
        #expect(ContentRange(header: "bytes 5-5/*")?.total == nil)
        #expect(ContentRange(header: "bytes 9-5/10") == nil)
        #expect(ContentRange(header: "items 0-1/2") == nil)
        #expect(ContentRange(header: "bytes 0-1/abc") == nil)
    }

    /// Every number in a Content-Range is hostile: no trap, no negative, no overflow.
    @Test func refusesHostileContentRanges() {
        let hostile = [
            "bytes 0-9223372036854775807/*",            // last + 1 overflows
            "bytes 0-9223372036854775807/9223372036854775807",
            "bytes 0-99999999999999999999/*",           // past Int64
            "bytes -5-10/100", "bytes 0--1/100", "bytes +0-10/100", "bytes 0-10/-100",
            "bytes 0-10/5",                              // a range past its own total
            "bytes 0-10", "bytes 0-10/", "bytes -/100", "bytes 0 -10/100", "bytes 0-1e3/2000",
        ]
        for header in hostile { #expect(ContentRange(header: header) == nil, "\(header)") }
        #expect(ContentRange(header: "bytes 0-99/100")?.range == 0..<100)
    }

    @Test func parsesStrictDecimalsOnly() {
        #expect(Int64(strictDecimal: "123") == 123)
        for text in ["", "-1", "+1", " 1", "1 ", "1e3", "0x10", "9223372036854775807", "１２"] {
            #expect(Int64(strictDecimal: text) == nil, "\(text)")
        }
    }

    @Test func parsesRetryAfter() {
        #expect(RetryPolicy.parseRetryAfter("3") == 3)
        #expect(RetryPolicy.parseRetryAfter(nil) == nil)
        #expect(RetryPolicy.parseRetryAfter("soon") == nil)
        for hostile in ["-5", "inf", "nan", "1e400", "3.5", "99999999999999999999999", "+3"] {
            #expect(RetryPolicy.parseRetryAfter(hostile) == nil, "\(hostile)")
        }
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        let later = RetryPolicy.parseRetryAfter("Tue, 14 Nov 2023 22:13:30 GMT", now: now)
        #expect(later == 10)
    }

    @Test func backoffGrowsWithJitterAndHonoursRetryAfter() {
        let policy = RetryPolicy(attempts: 5, backoffFactor: 2, baseDelay: 1, maxDelay: 6)
        let plain = SourceError(.serverError, source: "s", message: "m")
        for retry in 1...4 {
            let full = min(6, pow(2, Double(retry - 1)))
            let d = policy.delay(beforeRetry: retry, after: plain)
            #expect(d >= full / 2 && d <= full)
        }
        #expect(policy.delay(beforeRetry: 1, after: SourceError(.throttled, source: "s", message: "m", retryAfter: 7)) == 7)
        #expect(policy.delay(beforeRetry: 1, after: SourceError(.throttled, source: "s", message: "m", retryAfter: 900)) == 60)
    }

    @Test func retriesOnlyRetryableErrorsAndStopsAtTheLimit() {
        let policy = RetryPolicy(attempts: 2, baseDelay: 0.001)
        var tries = 0
        #expect(throws: SourceError.self) {
            try policy.run(cancel: .none) { _ throws(SourceError) in
                tries += 1
                throw SourceError(.serverError, source: "s", message: "boom", status: 500)
            }
        }
        #expect(tries == 3)

        tries = 0
        #expect(throws: SourceError.self) {
            try policy.run(cancel: .none) { _ throws(SourceError) in
                tries += 1
                throw SourceError(.notFound, source: "s", message: "gone", status: 404)
            }
        }
        #expect(tries == 1, "a 404 is final")

        tries = 0
        let value = try? policy.run(cancel: .none) { attempt throws(SourceError) -> Int in
            tries += 1
            if attempt == 0 { throw SourceError(.network, source: "s", message: "reset") }
            return 42
        }
        #expect(value == 42 && tries == 2)
    }

    @Test func redirectsResolveAndDropCredentialsAcrossHosts() throws {
        #expect(HTTPClient.resolve("/x/y", against: "http://a:1/p/q?z") == "http://a:1/x/y")
        #expect(HTTPClient.resolve("https://cdn/x", against: "http://a/p") == "https://cdn/x")
        #expect(HTTPClient.resolve("//cdn/x", against: "https://a/p") == "https://cdn/x")
        #expect(HTTPClient.resolve("r", against: "http://a/p/q") == "http://a/p/r")
        #expect(HTTPClient.authority(of: "http://Host:8/p") == "http://host:8")

        let client = HTTPClient()
        let request = HTTPRequest(.get, url: "http://hub:1/r", headers: [("Authorization", "Bearer t"), ("x-amz-security-token", "s"), ("X-Trace", "1")])
        let sameHost = try client.redirect(request, to: "/other")
        #expect(sameHost.headers.count == 3)
        let otherHost = try client.redirect(request, to: "http://cdn:2/blob?sig=1")
        #expect(otherHost.url == "http://cdn:2/blob?sig=1")
        #expect(otherHost.headers.map(\.name) == ["X-Trace"], "neither the bearer token nor the session token follows")
    }

    /// Only http and https, and never down from https to http.
    @Test func redirectsToOtherSchemesAreRefused() {
        let client = HTTPClient()
        let plain = HTTPRequest(.get, url: "http://origin:1/w.bin")
        for location in ["file:///etc/passwd", "file:/etc/passwd", "gopher://127.0.0.1:70/x", "dict://127.0.0.1:2628/d",
                         "ftp://127.0.0.1/x", "FILE:///etc/passwd", "ldap://h/x", "javascript:alert(1)"] {
            #expect(throws: SourceError.self, "\(location)") { _ = try client.redirect(plain, to: location) }
        }
        let secure = HTTPRequest(.get, url: "https://origin/w.bin")
        #expect(throws: SourceError.self) { _ = try client.redirect(secure, to: "http://cdn/w.bin") }
        #expect((try? client.redirect(secure, to: "https://cdn/w.bin"))?.url == "https://cdn/w.bin")
        #expect((try? client.redirect(plain, to: "https://cdn/w.bin"))?.url == "https://cdn/w.bin", "up to https is fine")
    }

    @Test func redactsCredentialsAndSignedQueries() {
        #expect(redacted("https://user:pw@host/p?X-Amz-Signature=abc") == "https://host/p")
        #expect(redacted("http://host/a@b") == "http://host/a@b")
    }

    @Test func parsesLinkHeaders() {
        #expect(HFStore.nextLink(#"<https://hub/api/models/a/b/tree/main?cursor=xyz>; rel="next""#) == "https://hub/api/models/a/b/tree/main?cursor=xyz")
        #expect(HFStore.nextLink(#"<https://x/prev>; rel="prev", <https://x/next>; rel="next""#) == "https://x/next")
        #expect(HFStore.nextLink(#"<https://x/prev>; rel="prev""#) == nil)
        #expect(HFStore.unquote(#"W/"abc""#) == "abc")
    }

    @Test func emptyRangesAreRefusedBeforeAnyNetwork() {
        do {
            _ = try HTTPEngine.shared.perform(HTTPRequest(.get, url: "http://127.0.0.1:1/x", range: 5..<5))
            Issue.record("no error")
        } catch {
            #expect(error.kind == .invalidRange)
            #expect(error.message.contains("empty range"))
        }
    }

    @Test func healthCoolsDownFailingSourcesOnly() {
        let health = SourceHealth(baseCooldown: 10)
        let now = Date()
        health.recordFailure("a", error: SourceError(.notFound, source: "a", message: "m"), now: now)
        #expect(!health.isCoolingDown("a", now: now))
        health.recordFailure("a", error: SourceError(.network, source: "a", message: "m"), now: now)
        #expect(health.isCoolingDown("a", now: now.addingTimeInterval(9)))
        #expect(!health.isCoolingDown("a", now: now.addingTimeInterval(11)))
        health.recordFailure("a", error: SourceError(.timeout, source: "a", message: "m"), now: now)
        #expect(health.isCoolingDown("a", now: now.addingTimeInterval(19)), "the second failure doubles the cool-down")
        health.recordSuccess("a")
        #expect(!health.isCoolingDown("a", now: now))
    }
}
