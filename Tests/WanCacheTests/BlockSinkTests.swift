import Foundation
import Synchronization
import Testing
import WanSources
import WanSystem
import WanTestSupport
@testable import WanCache

/// The sink of a fetch job: bytes land in the file, and each block is reported once, with
/// the sha256 of its bytes as they went by.
@Suite struct BlockSinkTests {
    /// A transfer's pieces do not line up with blocks (the response headers shift them):
    /// a piece that straddles a boundary must still give each block its own digest, or the
    /// fetcher reads every chunk back from the file and hashes it a second time.
    @Test func piecesThatStraddleBlocksStillGiveEveryBlockItsDigest() throws {
        let size = 5 * 4096 + 1000
        let data = (0..<size).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 7) }
        let sink = try RecordingSink(span: 0..<Int64(size))
        var offset = 0, piece = 1000
        while offset < size {
            let end = min(size, offset + piece)
            try data[offset..<end].withUnsafeBytes { try sink.sink.write($0, at: Int64(offset)) }
            offset = end
            piece = piece == 1000 ? 3000 : 1000   // boundaries fall inside pieces
        }

        let ranges = sink.reports.map(\.range)
        #expect(ranges == [0..<4096, 4096..<8192, 8192..<12288, 12288..<16384, 16384..<20480, 20480..<21480])
        for (range, digest) in sink.reports {
            let expected = SHA256Hasher.hash(data[Int(range.lowerBound)..<Int(range.upperBound)]).hex
            #expect(digest == expected, "block \(range): the digest of its own bytes, taken in passing")
        }
        let written = try sink.scratch.read("partial") == Data(data)
        #expect(written, "the file holds the bytes")
    }

    /// Bytes that do not arrive as one in-order run (another source resends a block from its
    /// start after a gap) leave that block without a digest: the fetcher reads it back.
    @Test func aBlockWhoseBytesArrivedOutOfOrderHasNoDigest() throws {
        let data = [UInt8](repeating: 7, count: 8192)
        let sink = try RecordingSink(span: 0..<8192)
        try data[0..<1000].withUnsafeBytes { try sink.sink.write($0, at: 0) }
        try data[2000..<3000].withUnsafeBytes { try sink.sink.write($0, at: 2000) }   // a gap
        try data[1000..<8192].withUnsafeBytes { try sink.sink.write($0, at: 1000) }
        #expect(sink.reports.map(\.range) == [0..<4096, 4096..<8192])
        #expect(sink.reports.first?.digest == nil, "out of order: read back instead")
        #expect(sink.reports.last?.digest == SHA256Hasher.hash(data[4096..<8192]).hex, "the next block is digested in passing again")
    }

    /// A chunk one source got wrong is sent again by the next source from its start: it is
    /// reported only once the new source's bytes cover it, with their digest. (It was reported
    /// after the new source's first piece, over the old source's bytes: the good source was
    /// then blamed for the bad one's chunk.)
    @Test func aChunkSentAgainIsReportedOnlyOnceTheNewBytesCoverIt() throws {
        let good = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let bad = [UInt8](repeating: 0xAA, count: 4096)
        let sink = try RecordingSink(span: 0..<8192, rejectFirstReportOf: 0..<4096)
        #expect(throws: (any Error).self) { try bad.withUnsafeBytes { try sink.sink.write($0, at: 0) } }
        #expect(sink.sink.resumePosition == 0, "the next source starts at the rejected chunk")
        try good[0..<1000].withUnsafeBytes { try sink.sink.write($0, at: 0) }
        #expect(sink.reports.count == 1, "nothing reported after the new source's first piece: \(sink.reports.map(\.range))")
        var offset = 1000
        while offset < 8192 {
            let end = min(8192, offset + 1500)
            try good[offset..<end].withUnsafeBytes { try sink.sink.write($0, at: Int64(offset)) }
            offset = end
        }
        #expect(sink.reports.dropFirst().map(\.range) == [0..<4096, 4096..<8192])
        #expect(sink.reports.dropFirst().first?.digest == SHA256Hasher.hash(good[0..<4096]).hex, "the new source's bytes, in passing")
        let written = try sink.scratch.read("partial") == Data(good)
        #expect(written, "the file holds the good bytes")
    }
}

/// A digesting `BlockSink` with 4 KiB blocks over a scratch file, recording what it reports.
private final class RecordingSink {
    let scratch: Scratch
    let descriptor: FileDescriptor
    let sink: BlockSink
    private let log: Log
    var reports: [(range: Range<Int64>, digest: String?)] { log.entries.withLock { $0.reports } }

    private final class Log: Sendable {
        let entries = Mutex<(reports: [(range: Range<Int64>, digest: String?)], reject: Range<Int64>?)>(([], nil))
    }

    /// - Parameter rejectFirstReportOf: the first report of this block throws, as a chunk that
    ///   fails its digest does.
    init(span: Range<Int64>, rejectFirstReportOf rejected: Range<Int64>? = nil) throws {
        scratch = try Scratch("wan-blocksink")
        descriptor = try FileDescriptor.open(scratch.path + "/partial", .readWrite, create: true)
        let log = Log()
        log.entries.withLock { $0.reject = rejected }
        self.log = log
        sink = BlockSink(FileSink(descriptor), span: span, blockSize: 4096, digestBlocks: true) { range, _, digest in
            let rejectNow = log.entries.withLock { entries -> Bool in
                entries.reports.append((range, digest))
                guard range == entries.reject else { return false }
                entries.reject = nil
                return true
            }
            if rejectNow { throw SourceError(.corrupt, source: "test", message: "chunk does not match its digest") }
        }
    }

    deinit { descriptor.close() }
}
