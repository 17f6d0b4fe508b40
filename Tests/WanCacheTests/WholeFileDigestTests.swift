import Foundation
import Testing
import WanSystem
import WanTestSupport
@testable import WanCache

/// The whole-file digest: hashed from memory for bytes written at its edge, read back for
/// the rest, started over whenever bytes it hashed may have changed.
@Suite struct WholeFileDigestTests {
    let data = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
    var expected: String { SHA256Hasher.hash(data).hex }

    func file(_ dir: Scratch, _ content: Data) throws -> FileDescriptor {
        try FileDescriptor.open(try dir.write("f", content), .readOnly)
    }

    func write(_ digest: WholeFileDigest, _ range: Range<Int>) {
        data[range].withUnsafeBytes { digest.wrote($0, at: Int64(range.lowerBound)) }
    }

    @Test func bytesWrittenInOrderAreHashedInPassingWithoutAReadBack() throws {
        let digest = WholeFileDigest(size: Int64(data.count))
        for start in stride(from: 0, to: data.count, by: 1 << 20) { write(digest, start..<(start + (1 << 20))) }
        #expect(digest.finish() == expected)
        #expect(digest.accounting.inPassing == Int64(data.count) && digest.accounting.readBack == 0)
    }

    @Test func bytesOutOfOrderAreReadBackOnceEverythingBeforeThemIsPresent() throws {
        let dir = try Scratch()
        let fd = try file(dir, data)
        defer { fd.close() }
        let digest = WholeFileDigest(size: Int64(data.count))
        write(digest, (2 << 20)..<(3 << 20))   // a later job finished first: not hashed yet
        write(digest, 0..<(1 << 20))
        #expect(digest.hashedUpTo == 1 << 20 && digest.finish() == nil)
        try digest.catchUp(from: fd, to: Int64(data.count))
        #expect(digest.finish() == expected)
        #expect(digest.accounting.readBack == 2 << 20)
    }

    /// A deferred digest pauses when the engine fetches again (asked every 16 MiB) and goes
    /// on from there: the result is the file's digest all the same.
    @Test func aPausedCatchUpGoesOnWhereItStopped() throws {
        let dir = try Scratch()
        let big = Data((0..<(40 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) })
        let fd = try file(dir, big)
        defer { fd.close() }
        let digest = WholeFileDigest(size: Int64(big.count))
        var asked = 0
        #expect(try !digest.catchUp(from: fd, to: Int64(big.count), pause: { asked += 1; return asked == 2 }))
        #expect(digest.hashedUpTo > 0 && digest.hashedUpTo < Int64(big.count) && digest.finish() == nil)
        #expect(try digest.catchUp(from: fd, to: Int64(big.count), pause: { false }))
        #expect(digest.finish() == SHA256Hasher.hash(big).hex)
        #expect(digest.accounting.readBack == Int64(big.count), "nothing hashed twice")
    }

    @Test func aRewriteOfHashedBytesStartsOverAndTheResultIsStillRight() throws {
        let dir = try Scratch()
        var changed = data
        changed[100] ^= 0xFF   // what another source resent differs from what was hashed
        let fd = try file(dir, data)   // the file ends up with the right bytes
        defer { fd.close() }
        let digest = WholeFileDigest(size: Int64(data.count))
        changed[0..<(1 << 20)].withUnsafeBytes { digest.wrote($0, at: 0) }
        write(digest, 0..<1000)   // rewritten from the start of the range
        #expect(digest.hashedUpTo == 0 && digest.accounting.restarts == 1)
        try digest.catchUp(from: fd, to: Int64(data.count))
        #expect(digest.finish() == expected, "the digest is of the file's bytes, not of bytes that were replaced")
        let other = WholeFileDigest(size: Int64(data.count))
        write(other, 0..<(1 << 20))
        other.invalidate(from: 4096)   // a chunk there failed its digest
        #expect(other.hashedUpTo == 0)
        other.invalidate(from: 0)
        #expect(other.accounting.restarts == 1, "nothing hashed past it: nothing to start over")
    }

    @Test func aFileShorterThanItsRecordedBytesIsAnErrorNotAShortDigest() throws {
        let dir = try Scratch()
        let fd = try file(dir, data[0..<1000])
        defer { fd.close() }
        let digest = WholeFileDigest(size: Int64(data.count))
        #expect(throws: SystemError.self) { try digest.catchUp(from: fd, to: Int64(data.count)) }
        #expect(digest.finish() == nil)
    }
}
