import Foundation
import Testing
import WanCore
import WanTestSupport
@testable import WanSources

/// A misbehaving server ends in correct bytes (after retry or failover) or a clear error —
/// never in wrong bytes.
@Suite struct FaultTests {
    let data = testBytes(400_000, seed: 31)

    func file(_ label: String) throws -> String {
        try TestServers.putFault(TestServers.uniqueName(label) + ".bin", data)
    }

    func requests(_ behaviour: String, _ path: String) throws -> Int {
        try TestServers.faultStats()["/\(behaviour)/\(path)"]?.requests ?? 0
    }

    @Test func aConnectionClosedMidBodyIsResumedWhereItBroke() throws {
        let path = try file("close")
        let store = try Servers.faults("close-mid-body")
        #expect(try readRange(store, path, 0..<Int64(data.count)) == data)
        #expect(try requests("close-mid-body", path) == 2)
        let stats = try #require(try TestServers.faultStats()["/close-mid-body/\(path)"])
        #expect(stats.bytes < Int64(data.count) * 3 / 2, "the retry asked only for the missing part (\(stats.bytes) bytes sent)")
    }

    @Test func a500ThenA200Succeeds() throws {
        let path = try file("err")
        #expect(try readRange(Servers.faults("error-then-ok;status=500;times=2"), path, 100..<5000) == data[100..<5000])
        #expect(try requests("error-then-ok", path) == 3)
    }

    @Test func a429WithRetryAfterIsHonoured() throws {
        let path = try file("throttle")
        let started = Date()
        #expect(try readRange(Servers.faults("retry-after;status=429;seconds=1;times=1"), path, 0..<1000) == data[0..<1000])
        #expect(Date().timeIntervalSince(started) >= 0.95, "waited for Retry-After")
    }

    @Test func aWrongContentRangeIsRefusedAndNothingIsWritten() throws {
        let path = try file("shift")
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1000, alignment: 1)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xAB)
        let error = sourceError {
            try Servers.faults("wrong-range").read(path, range: 5000..<6000, fileSize: nil, into: BufferSink(buffer, base: 5000), cancel: .none)
        }
        #expect(error?.kind == .protocolViolation)
        #expect(error?.message.contains("asked for bytes 5000-5999") == true, "\(String(describing: error))")
        #expect(Data(buffer).allSatisfy { $0 == 0xAB }, "no byte of the shifted answer reached the buffer")
        #expect(try requests("wrong-range", path) == 3, "retried (1 + 2 attempts), then gave up")
    }

    @Test func fewerBytesThanPromisedIsAnErrorNotAShortRead() throws {
        let path = try file("short")
        let error = sourceError { _ = try readRange(Servers.faults("short"), path, 0..<Int64(data.count)) }
        #expect(error?.kind == .network || error?.kind == .protocolViolation, "\(String(describing: error))")
        #expect(error?.message.contains("connection broken") == true, "\(String(describing: error))")
    }

    @Test func aServerThatIgnoresRangeIsRefusedForPartsButServesWholeFiles() throws {
        let path = try file("ignore")
        let store = try Servers.faults("ignore-range")
        let error = sourceError { _ = try readRange(store, path, 10..<20) }
        #expect(error?.kind == .protocolViolation && error?.message.contains("ignored the Range header") == true)
        #expect(try readRange(store, path, 0..<Int64(data.count), fileSize: Int64(data.count)) == data)
    }

    @Test func aHungServerTimesOut() throws {
        let path = try file("hang")
        let started = Date()
        let error = sourceError { _ = try readRange(Servers.faults("hang", client: Servers.client(attempts: 0, timeout: 2)), path, 0..<100) }
        let elapsed = Date().timeIntervalSince(started)
        #expect(error?.kind == .timeout, "\(String(describing: error))")
        #expect(elapsed >= 1.5 && elapsed < 10, "timed out after \(elapsed) s")
    }

    @Test func cancellationStopsATransfer() throws {
        let path = try file("slow")
        let cancel = CancellationToken()
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { cancel.cancel() }
        let started = Date()
        let error = sourceError {
            try Servers.faults("slow;bps=2000").read(path, range: 0..<100_000, fileSize: nil, into: DiscardSink(), cancel: cancel)
        }
        #expect(error?.kind == .cancelled)
        #expect(Date().timeIntervalSince(started) < 5)
    }

    @Test func aBandwidthCapHolds() throws {
        let name = TestServers.uniqueName("cap")
        let big = testBytes(2_000_000, seed: 32)
        try TestServers.putHTTP("\(name)/w.bin", big)
        let client = HTTPClient(retry: RetryPolicy(attempts: 0), requestTimeout: 10, maxBytesPerSecond: 1_000_000)
        let started = Date()
        // Two transfers share the client's limiter: together they get 1 MB/s.
        let halves = [Int64(0)..<1_000_000, 1_000_000..<2_000_000]
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            _ = try? readRange(Servers.http(name, client: client), "w.bin", halves[i])
        }
        let rate = Double(big.count) / Date().timeIntervalSince(started)
        #expect(rate > 1_000_000 * 0.8 && rate < 1_000_000 * 1.2, "\(Int(rate)) B/s with a 1 MB/s cap")
    }

    // MARK: Failover

    @Test func aDownSourceHandsOverToTheNext() throws {
        let name = TestServers.uniqueName("fo")
        try TestServers.putHTTP("\(name)/w.bin", data)
        let down = try HttpStore(source: SourceURL(parsing: "http://127.0.0.1:9/\(name)"), client: Servers.client(attempts: 0, timeout: 2))
        let reader = FailoverReader(backends: [down, try Servers.http(name)], health: SourceHealth())
        let file = FileSpec(path: "w.bin", size: Int64(data.count), sha256: sha256Hex(data))
        let sink = DataSink(base: 0)
        let used = try reader.read(file, range: 0..<Int64(data.count), into: sink)
        #expect(Data(sink.bytes) == data)
        #expect(used.displayName.hasSuffix(name))
        #expect(reader.health.isCoolingDown(down.displayName), "the failed source rests before it is tried again")
        #expect(reader.order.first?.displayName == used.displayName)
    }

    @Test func corruptBytesAtTheFirstSourceHandOverToTheSecond() throws {
        let name = TestServers.uniqueName("fo-corrupt")
        try TestServers.putHTTP("\(name)/w.bin", data)
        let path = try TestServers.putFault("\(name)/w.bin", data)
        _ = path
        let corrupt = try HttpStore(source: SourceURL(parsing: try TestServers.value("WAN_TEST_FAULTS") + "/corrupt/\(name)"), client: Servers.client())
        let good = try Servers.http(name)
        let chunk = 0..<Int64(data.count)
        let expected = sha256Hex(data)
        let reader = FailoverReader(backends: [corrupt, good], health: SourceHealth())
        let sink = DataSink(base: 0)
        let file = FileSpec(path: "w.bin", size: Int64(data.count), sha256: expected)
        let used = try reader.read(file, range: chunk, into: sink, verify: { backend in
            guard sha256Hex(Data(sink.bytes)) == expected else {
                throw SourceError(.corrupt, source: backend.displayName, message: "chunk 0 does not match its digest")
            }
        })
        #expect(used.displayName == good.displayName)
        #expect(Data(sink.bytes) == data)
    }

    @Test func whenEverySourceFailsTheErrorNamesEachOne() throws {
        let name = TestServers.uniqueName("allfail")
        let reader = FailoverReader(backends: [
            try HttpStore(source: SourceURL(parsing: "http://127.0.0.1:9/\(name)"), client: Servers.client(attempts: 0, timeout: 2)),
            try Servers.http(name), try Servers.s3(name),
        ], health: SourceHealth())
        do {
            try reader.read(FileSpec(path: "w.bin", size: 10, sha256: String(repeating: "0", count: 64)), range: 0..<10, into: DiscardSink())
            Issue.record("no error")
        } catch let error as AllSourcesFailedError {
            #expect(error.failures.count == 3)
            #expect(error.description.contains("cannot connect"))
            #expect(error.description.contains("w.bin not found (HTTP 404)"))
            #expect(error.description.contains("s3://models/\(name)/w.bin not found"))
        }
    }
}
