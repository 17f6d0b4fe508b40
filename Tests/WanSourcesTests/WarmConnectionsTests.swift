import Foundation
import Synchronization
import Testing
import WanTestSupport
@testable import WanSources

/// Connections opened ahead of the first reads (what a mount does as it starts): the first
/// reads of a load run side by side (the reader's, and the hydration's beside it), and each
/// must find a connection already open, not only the first.
@Suite struct WarmConnectionsTests {
    static let piece: Int64 = 16 << 20

    /// Runs `count` range requests of `url` at once (16 MiB each, so that they overlap: each
    /// takes a handle of its own); returns the connections they opened.
    static func concurrentReads(_ engine: HTTPEngine, _ url: String, count: Int) throws -> Int {
        let results = Mutex<[Result<Int, SourceError>]>([])
        let start = DispatchSemaphore(value: 0)
        let group = DispatchGroup()
        for i in 0..<count {
            group.enter()
            Thread {
                defer { group.leave() }
                start.wait()
                let result = Result { () throws(SourceError) -> Int in
                    let sink = DiscardSink()
                    let range = Int64(i) * piece..<Int64(i + 1) * piece
                    let response = try engine.perform(HTTPRequest(url: url, range: range), into: sink)
                    guard response.status == 206, sink.bytesWritten == piece else {
                        throw SourceError(.protocolViolation, source: url, message: "HTTP \(response.status), \(sink.bytesWritten) bytes")
                    }
                    return response.newConnections
                }
                results.withLock { $0.append(result) }
            }.start()
        }
        for _ in 0..<count { start.signal() }
        group.wait()
        return try results.withLock { results in try results.reduce(0) { $0 + (try $1.get()) } }
    }

    @Test func warmedConnectionsServeConcurrentFirstReadsWithoutNewOnes() throws {
        let url = try TestServers.putHTTP(TestServers.uniqueName("warm") + "/w.bin", testBytes(64 << 20))
        let root = try TestServers.value("WAN_TEST_HTTP") + "/"

        // A cold engine: reads at once open connections of their own.
        #expect(try Self.concurrentReads(HTTPEngine(), url, count: 4) >= 2)
        // Warmed with one connection (what a mount did before): the others still connect.
        let one = HTTPEngine()
        #expect(one.warm(root, connections: 1, timeout: 10) == 1)
        #expect(try Self.concurrentReads(one, url, count: 4) >= 1)

        // Warmed with four: the same four reads open none.
        let engine = HTTPEngine()
        #expect(engine.warm(root, connections: 4, timeout: 10) == 4)
        #expect(try Self.concurrentReads(engine, url, count: 4) == 0)
        // Warming again finds them open.
        #expect(engine.warm(root, connections: 4, timeout: 10) == 0)
    }

    @Test func aHostThatRefusesIsNoErrorAndOpensNothing() {
        // Port 9 (discard) on loopback: nothing listens in the test environment, so each
        // connection is refused at once (the timeout itself is libcurl's, not tested here).
        let started = ContinuousClock.now
        #expect(HTTPEngine().warm("http://127.0.0.1:9/", connections: 3, timeout: 2) == 0)
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
