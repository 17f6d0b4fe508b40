import WanCore
import WanSystem

/// The persisted list of byte ranges present in a partial file: an append-only log.
///
/// ```
/// header: "WANMAP1\n" | size (u64 LE) | sha256 (32 bytes)              48 bytes
/// record: start (u64 LE) | end (u64 LE) | check (u32 LE, FNV-1a of the 16 bytes)   20 bytes
/// ```
///
/// A record is appended only after the bytes it names were written to the partial file
/// (and, in batches, synced), so the log never claims bytes that are not on disk. A torn
/// last record (a crash mid-append) fails its check and is dropped on load; the file is
/// truncated back to the last good record.
public final class RangeMapLog {
    public let path: String
    private var descriptor: FileDescriptor
    private var end: Int64
    private var records = 0

    static let magic = Array("WANMAP1\n".utf8)
    static let headerSize: Int64 = 48
    static let recordSize = 20

    /// Opens (or creates) the log for a file of `size` bytes with digest `sha256` and returns
    /// it with the ranges it records. A log written for other content is discarded.
    public static func open(path: String, size: Int64, sha256: String) throws(SystemError) -> (RangeMapLog, RangeSet) {
        let fd = try FileDescriptor.open(path, .readWrite, create: true, permissions: 0o644)
        do throws(SystemError) {
            let header = makeHeader(size: size, sha256: sha256)
            let length = try fd.info().size
            let existing = try fd.read(count: Int(min(length, 64 << 20)), at: 0)
            let got = existing.count
            var ranges = RangeSet()
            var good = headerSize
            if got >= Int(headerSize) && Array(existing[0..<Int(headerSize)]) == header {
                var offset = Int(headerSize)
                while offset + recordSize <= got {
                    guard let range = decode(Array(existing[offset..<(offset + recordSize)])), range.upperBound <= size else { break }
                    ranges.insert(range)
                    offset += recordSize
                }
                good = Int64(offset)
            } else {
                try fd.truncate(to: 0)
                try fd.write(header, at: 0)
            }
            if good < length { try fd.truncate(to: good) }
            let log = RangeMapLog(path: path, descriptor: fd, end: good)
            log.records = Int((good - headerSize) / Int64(recordSize))
            return (log, ranges)
        } catch {
            fd.close()
            throw error
        }
    }

    private init(path: String, descriptor: FileDescriptor, end: Int64) {
        self.path = path
        self.descriptor = descriptor
        self.end = end
    }

    deinit { descriptor.close() }

    /// Records that `ranges` are on disk.
    public func append(_ ranges: [Range<Int64>]) throws(SystemError) {
        guard !ranges.isEmpty else { return }
        var bytes: [UInt8] = []
        for range in ranges { bytes += RangeMapLog.encode(range) }
        try descriptor.write(bytes, at: end)
        end += Int64(bytes.count)
        records += ranges.count
    }

    /// Rewrites the log as the minimal list of `ranges` (when it has grown long), atomically.
    public func compactIfLarge(_ ranges: RangeSet, size: Int64, sha256: String) throws(SystemError) {
        guard records > 4 * max(ranges.ranges.count, 64) else { return }
        var bytes = RangeMapLog.makeHeader(size: size, sha256: sha256)
        for range in ranges.ranges { bytes += RangeMapLog.encode(range) }
        let temporary = path + ".compact"
        let fd = try FileDescriptor.open(temporary, .writeOnly, create: true, truncate: true)
        defer { fd.close() }
        try fd.write(bytes, at: 0)
        try fd.sync()
        try FileSystem.rename(temporary, to: path)
        // Keep appending to the new file.
        let reopened = try FileDescriptor.open(path, .readWrite)
        descriptor.close()
        descriptor = reopened
        end = Int64(bytes.count)
        records = ranges.ranges.count
    }

    /// Re-reads records appended by another process since `known` (used while another
    /// process owns the fetch).
    public static func reload(path: String, size: Int64, sha256: String) -> RangeSet? {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return nil }
        defer { fd.close() }
        guard let length = try? fd.info().size, length >= headerSize,
              let bytes = try? fd.read(count: Int(length), at: 0) else { return nil }
        let got = bytes.count
        guard got >= Int(headerSize), Array(bytes[0..<Int(headerSize)]) == makeHeader(size: size, sha256: sha256) else { return nil }
        var ranges = RangeSet()
        var offset = Int(headerSize)
        while offset + recordSize <= got, let range = decode(Array(bytes[offset..<(offset + recordSize)])), range.upperBound <= size {
            ranges.insert(range)
            offset += recordSize
        }
        return ranges
    }

    static func makeHeader(size: Int64, sha256: String) -> [UInt8] {
        var header = magic
        header += withUnsafeBytes(of: UInt64(size).littleEndian, Array.init)
        var digest = [UInt8](repeating: 0, count: 32)
        let hex = Array(sha256.utf8)
        for i in 0..<min(32, hex.count / 2) {
            digest[i] = UInt8(String(decoding: hex[(2 * i)..<(2 * i + 2)], as: UTF8.self), radix: 16) ?? 0
        }
        return header + digest
    }

    static func encode(_ range: Range<Int64>) -> [UInt8] {
        var bytes = withUnsafeBytes(of: UInt64(range.lowerBound).littleEndian, Array.init)
        bytes += withUnsafeBytes(of: UInt64(range.upperBound).littleEndian, Array.init)
        return bytes + withUnsafeBytes(of: fnv1a(bytes).littleEndian, Array.init)
    }

    static func decode(_ bytes: [UInt8]) -> Range<Int64>? {
        guard bytes.count == recordSize else { return nil }
        let body = Array(bytes[0..<16])
        guard UInt32(truncatingIfNeeded: littleEndian(bytes, at: 16, count: 4)) == fnv1a(body) else { return nil }
        let start = littleEndian(bytes, at: 0, count: 8)
        let end = littleEndian(bytes, at: 8, count: 8)
        guard start < end, end <= UInt64(Int64.max) else { return nil }
        return Int64(start)..<Int64(end)
    }

    static func littleEndian(_ bytes: [UInt8], at offset: Int, count: Int) -> UInt64 {
        (0..<count).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << (8 * UInt64($1)) }
    }

    static func fnv1a(_ bytes: [UInt8]) -> UInt32 {
        bytes.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
    }
}
