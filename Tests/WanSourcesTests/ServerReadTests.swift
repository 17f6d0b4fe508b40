import Foundation
import Testing
import WanCore
import WanTestSupport
@testable import WanSources

/// Every scheme against a real server: byte-exact ranges, errors for empty and
/// out-of-range requests, sizes.
@Suite struct ServerReadTests {
    enum Kind: String, CaseIterable, Sendable {
        case nginx, seaweedfs, hubFixture, olah, rclone
    }

    /// A backend of `kind` holding `path` with `data`.
    static func prepare(_ kind: Kind, data: Data) throws -> (any StorageBackend, String, Data) {
        let name = TestServers.uniqueName("read")
        switch kind {
        case .nginx:
            try TestServers.putHTTP("\(name)/dir/file with space+plus.bin", data)
            return (try Servers.http(name), "dir/file with space+plus.bin", data)
        case .seaweedfs:
            try TestServers.putS3("\(name)/dir/ünïcode & file+1.bin", data)
            return (try Servers.s3(name), "dir/ünïcode & file+1.bin", data)
        case .hubFixture:
            try TestServers.putHF(repo: "wan-test/\(name)", files: ["sub/weights.bin": data])
            return (try Servers.hub("wan-test/\(name)"), "sub/weights.bin", data)
        case .olah:
            return (try Servers.olah(), "weights.bin", try Servers.sampleWeights())
        case .rclone:
            try Servers.putRclone("\(name)/w.bin", data)
            return (try Servers.rclone(name), "w.bin", data)
        }
    }

    @Test(arguments: Kind.allCases)
    func readsFullAndPartialRangesByteExact(_ kind: Kind) throws {
        let (backend, path, data) = try Self.prepare(kind, data: testBytes(3 << 20, seed: 11))
        let size = Int64(data.count)
        #expect(try backend.stat(path, cancel: .none).size == size)
        #expect(try readRange(backend, path, 0..<size) == data)
        for range in [Int64(0)..<1, 1_000_000..<1_000_017, size - 1..<size, 12345..<(size - 3)] {
            #expect(try readRange(backend, path, range) == data[Int(range.lowerBound)..<Int(range.upperBound)], "\(kind) \(range)")
        }
    }

    @Test(arguments: Kind.allCases)
    func emptyAndOutOfRangeRequestsAreClearErrors(_ kind: Kind) throws {
        let (backend, path, data) = try Self.prepare(kind, data: testBytes(1 << 20, seed: 12))
        let size = Int64(data.count)
        let empty = sourceError { _ = try readRange(backend, path, 10..<10) }
        #expect(empty?.kind == .invalidRange)
        #expect(empty?.message.contains("nothing to fetch") == true)
        let beyond = sourceError { _ = try readRange(backend, path, size..<(size + 10)) }
        #expect(beyond?.kind == .invalidRange, "\(kind): \(String(describing: beyond))")
        #expect(beyond?.code.rawValue == "INVALID_RANGE")
    }

    @Test func aCheckedSinkNeverSeesBytesOutsideTheRequest() throws {
        let (backend, path, data) = try Self.prepare(.nginx, data: testBytes(64 << 10, seed: 13))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 100, alignment: 1)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0xEE)
        try backend.read(path, range: 500..<600, fileSize: nil, into: BufferSink(buffer, base: 500), cancel: .none)
        #expect(Data(buffer) == data[500..<600])
    }

    @Test func rcloneAnswers200WithContentRangeAndIsAccepted() throws {
        let name = TestServers.uniqueName("rclone")
        let data = testBytes(50_000, seed: 14)
        try Servers.putRclone("\(name)/f.bin", data)
        let backend = try Servers.rclone(name)
        let request = backend.request(.get, key: backend.key("f.bin"))
        var ranged = request
        ranged.range = 10..<20
        let sink = DataSink(base: 10)
        let response = try HTTPEngine.shared.perform(ranged, into: sink)
        #expect(response.status == 200, "rclone answers ranges with 200 + Content-Range")
        #expect(response.header("content-range") == "bytes 10-19/50000")
        #expect(Data(sink.bytes) == data[10..<20])
    }
}
