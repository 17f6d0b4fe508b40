import Foundation
import Testing
import WanCore
import WanTestSupport
@testable import WanSources

/// What a hostile or broken server can send, and what wanfs does with it: every number is
/// checked (a bad one fails that request, the next source is asked, nothing traps), and only
/// http and https are ever fetched, redirects included, with credentials kept to their host.
@Suite struct HostileServerTests {
    let data = testBytes(300_000, seed: 77)

    func file(_ label: String) throws -> String {
        try TestServers.putFault(TestServers.uniqueName(label) + ".bin", data)
    }

    static let kinds = ["range-overflow", "range-negative", "range-past-total", "total-mismatch", "length-negative",
                        "length-huge", "length-duplicate", "range-duplicate"]

    /// Absurd, negative, overflowing, mismatched or duplicated headers: the read fails with an
    /// error for that source (no trap), and with a good second source it gets the right bytes.
    @Test(arguments: kinds) func absurdNumbersFailTheRequestAndTheNextSourceServes(kind: String) throws {
        let path = try file("hostile")
        try TestServers.putHTTP(path, data)
        let hostile = try Servers.faults("hostile;kind=\(kind)", client: Servers.client(attempts: 1))
        let error = sourceError { _ = try readRange(hostile, path, 1000..<200_000, fileSize: Int64(data.count)) }
        #expect(error != nil, "\(kind): the hostile answer was accepted")
        #expect(error?.kind == .protocolViolation || error?.kind == .network, "\(kind): \(String(describing: error))")

        let reader = FailoverReader(backends: [hostile, try Servers.http("")], health: SourceHealth())
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 199_000, alignment: 1)
        defer { buffer.deallocate() }
        let spec = FileSpec(path: path, size: Int64(data.count), sha256: String(repeating: "0", count: 64))
        let served = try reader.read(spec, range: 1000..<200_000, into: BufferSink(buffer, base: 1000))
        #expect(served.displayName.hasPrefix(try TestServers.value("WAN_TEST_HTTP")), "\(kind)")
        #expect(Data(buffer) == data[1000..<200_000], "\(kind): the next source's bytes, exactly")
    }

    /// A `Retry-After` of 1e400, -5 or nan is no delay a server may ask for: it is ignored
    /// (a long one is capped at a minute; HTTPPiecesTests checks the cap).
    @Test(arguments: ["1e400", "-5", "nan", "99999999999999999999999"]) func anAbsurdRetryAfterIsNotWaitedFor(value: String) throws {
        let path = try file("retry")
        let started = Date()
        let error = sourceError {
            _ = try readRange(Servers.faults("hostile;kind=retry-after-absurd;value=\(value)"), path, 0..<1000)
        }
        #expect(error?.kind == .throttled, "\(String(describing: error))")
        #expect(Date().timeIntervalSince(started) < 10, "waited \(Date().timeIntervalSince(started)) s")
    }

    /// Redirects to file://, gopher://, dict://, ftp:// are refused before any connection is
    /// made or any local file opened.
    @Test func redirectsLeaveHTTPNever() throws {
        let path = try file("redirect")
        let listener = try Recorder("tcp")
        // A FIFO as the file:// target: whoever opens it for reading is seen (a writer can open it).
        let dir = try Scratch("wan-redirect")
        let fifo = dir.path + "/probe.fifo"
        #expect(mkfifo(fifo, 0o644) == 0)
        let targets = ["file://\(fifo)", "file:///etc/passwd", "gopher://127.0.0.1:\(listener.port)/1x",
                       "dict://127.0.0.1:\(listener.port)/d:x", "ftp://127.0.0.1:\(listener.port)/x"]
        for target in targets {
            let store = try Servers.faults("redirect;target=\(base64URL(target))", client: Servers.client(attempts: 1))
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1000, alignment: 1)
            defer { buffer.deallocate() }
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            let error = sourceError { try store.read(path, range: 0..<1000, fileSize: nil, into: BufferSink(buffer, base: 0), cancel: .none) }
            #expect(error != nil, "\(target) was followed")
            #expect(Data(buffer).allSatisfy { $0 == 0 }, "nothing of \(target) reached the buffer")
            let reader = open(fifo, O_WRONLY | O_NONBLOCK)
            #expect(reader == -1 && errno == ENXIO, "\(target): the FIFO was opened by the fetch")
            if reader >= 0 { close(reader) }
        }
        Thread.sleep(forTimeInterval: 0.3)
        #expect(listener.records.isEmpty, "a local listener was connected to: \(listener.records)")
    }

    /// Credentials stay with their host: neither `Authorization` nor an S3 session token
    /// (`x-amz-security-token`) follows a redirect to another host.
    @Test func credentialsDoNotFollowARedirectToAnotherHost() throws {
        let path = try file("creds")
        let elsewhere = try Recorder("http")
        let target = "http://127.0.0.1:\(elsewhere.port)/blob"
        let url = try TestServers.value("WAN_TEST_FAULTS") + "/redirect;target=\(base64URL(target))/\(path)"
        let request = HTTPRequest(.get, url: url, headers: [("Authorization", "AWS4-HMAC-SHA256 Credential=secret"),
                                                            ("x-amz-security-token", "session-secret"), ("x-trace", "1")])
        _ = try? Servers.client(attempts: 0).send(request, into: DiscardSink(), cancel: .none) { _ in nil }
        let seen = try #require(elsewhere.headers.first, "the redirect was not followed at all")
        #expect(seen["authorization"] == nil && seen["x-amz-security-token"] == nil, "credentials followed: \(seen)")
        #expect(seen["x-trace"] == "1", "other headers do follow")
    }

    /// The Hub's tree listing pages with `Link: <next>`; the token goes to the endpoint's host
    /// only, never to a host a Link header names.
    @Test func theHubTokenIsNotSentToAHostALinkHeaderNames() throws {
        let elsewhere = try Recorder("http")
        let hub = try Recorder("hf-tree", next: "http://127.0.0.1:\(elsewhere.port)/api/models/o/r/tree/main?cursor=2")
        let store = try HFStore(source: SourceURL(parsing: "hf://o/r"), endpoint: "http://127.0.0.1:\(hub.port)",
                                token: "hf_secret_token", client: Servers.client())
        _ = try? store.list(prefix: "", cancel: .none)
        #expect(hub.headers.first?["authorization"] == "Bearer hf_secret_token", "the endpoint itself gets the token")
        let paged = try #require(elsewhere.headers.first, "the next page was not asked for")
        #expect(paged["authorization"] == nil, "the token went to the host of a Link header: \(paged)")
    }
}
