import Glibc
import WanCore
import WanSystem

/// The persisted list of byte ranges present in a partial file: an append-only log.
///
/// ```
/// header: "WANMAP2\n" | size (u64 LE) | sha256 (32 bytes) | partial file device, inode (u64 LE each)   64 bytes
/// record: start (u64 LE) | end (u64 LE) | check (u32 LE, FNV-1a of the 16 bytes)                       20 bytes
/// ```
///
/// A record is appended only after the bytes it names were written to the partial file
/// (and, in batches, synced), so the log never claims bytes that are not on disk. A torn
/// last record (a crash mid-append) fails its check and is dropped on load; the file is
/// truncated back to the last good record.
///
/// The header names the partial file the log describes (device and inode): a log whose
/// partial file was removed or replaced (GC, `ensure --force`, a copy of MODELS_ROOT) no
/// longer matches it and claims nothing. Logs of the first format (`WANMAP1`, without the
/// file's identity) are taken over by the process that owns the fetch and rewritten.
public final class RangeMapLog {
    public let name: String
    private let directory: Directory
    private var descriptor: FileDescriptor
    private var end: Int64
    private var records = 0
    private let header: [UInt8]

    static let magic = Array("WANMAP2\n".utf8)
    static let legacyMagic = Array("WANMAP1\n".utf8)
    static let headerSize = 64
    static let legacyHeaderSize = 48
    static let recordSize = 20

    /// Opens (or creates) the log `name` in `directory` for the partial file `partial` of
    /// content (`size`, `sha256`) and returns it with the ranges it records. A log written
    /// for other content or another partial file is emptied. Never follows a symlink.
    public static func open(in directory: Directory, name: String, size: Int64, sha256: String,
                            partial: FileIdentity) throws(SystemError) -> (RangeMapLog, RangeSet) {
        let fd = try directory.createOrOpenRegular(name)
        do throws(SystemError) {
            let header = makeHeader(size: size, sha256: sha256, partial: partial)
            let length = try fd.info().size
            let existing = try fd.read(count: Int(min(length, 64 << 20)), at: 0)
            let parsed = parse(existing, size: size, sha256: sha256, partial: partial, acceptLegacy: true)
            let log = RangeMapLog(name: name, directory: directory, descriptor: fd, header: header)
            if let parsed, parsed.legacy == false {
                if Int64(parsed.end) < length { try fd.truncate(to: Int64(parsed.end)) }
                log.end = Int64(parsed.end)
                log.records = (parsed.end - headerSize) / recordSize
                return (log, parsed.ranges)
            }
            // New, foreign or legacy: start the file over (a legacy log's ranges are kept).
            let ranges = parsed?.ranges ?? RangeSet()
            var bytes = header
            for range in ranges.ranges { bytes += encode(range) }
            try fd.truncate(to: 0)
            try fd.write(bytes, at: 0)
            log.end = Int64(bytes.count)
            log.records = ranges.ranges.count
            return (log, ranges)
        } catch {
            fd.close()
            throw error
        }
    }

    private init(name: String, directory: Directory, descriptor: FileDescriptor, header: [UInt8]) {
        self.name = name
        self.directory = directory
        self.descriptor = descriptor
        self.header = header
        self.end = Int64(header.count)
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
    public func compactIfLarge(_ ranges: RangeSet) throws(SystemError) {
        guard records > 4 * max(ranges.ranges.count, 64) else { return }
        var bytes = header
        for range in ranges.ranges { bytes += RangeMapLog.encode(range) }
        let temporary = name + ".compact"
        let fd = try directory.createOrOpenRegular(temporary)
        do {
            try fd.truncate(to: 0)
            try fd.write(bytes, at: 0)
            try fd.sync()
            try directory.rename(temporary, to: directory, as: name)
        } catch {
            fd.close()
            throw error
        }
        // Keep appending to the new file.
        descriptor.close()
        descriptor = fd
        end = Int64(bytes.count)
        records = ranges.ranges.count
    }

    /// The ranges another process recorded for the partial file `partial` (nil identity:
    /// whatever partial file; for status only). nil when there is no log, or it is for other
    /// content or another partial file.
    public static func reload(in directory: Directory, name: String, size: Int64, sha256: String,
                              partial: FileIdentity?) -> RangeSet? {
        guard let fd = try? directory.openFile(name, .readOnly) else { return nil }
        defer { fd.close() }
        guard let length = try? fd.info().size, length >= Int64(legacyHeaderSize),
              let bytes = try? fd.read(count: Int(min(length, 64 << 20)), at: 0) else { return nil }
        return parse(bytes, size: size, sha256: sha256, partial: partial, acceptLegacy: partial == nil)?.ranges
    }

    /// Reads a log's bytes: its ranges and where its good records end, or nil when the
    /// header does not describe this content (and this partial file, when given).
    static func parse(_ bytes: [UInt8], size: Int64, sha256: String, partial: FileIdentity?,
                      acceptLegacy: Bool) -> (ranges: RangeSet, end: Int, legacy: Bool)? {
        let start: Int
        let legacy: Bool
        if bytes.count >= headerSize, Array(bytes[0..<magic.count]) == magic,
           Array(bytes[magic.count..<(headerSize - 16)]) == Array(makeHeader(size: size, sha256: sha256, partial: nil)[magic.count..<(headerSize - 16)]) {
            if let partial {
                let device = littleEndian(bytes, at: headerSize - 16, count: 8)
                let inode = littleEndian(bytes, at: headerSize - 8, count: 8)
                guard device == partial.device && inode == partial.inode else { return nil }
            }
            start = headerSize
            legacy = false
        } else if acceptLegacy, bytes.count >= legacyHeaderSize, Array(bytes[0..<legacyMagic.count]) == legacyMagic,
                  Array(bytes[legacyMagic.count..<legacyHeaderSize]) == Array(makeHeader(size: size, sha256: sha256, partial: nil)[magic.count..<(headerSize - 16)]) {
            start = legacyHeaderSize
            legacy = true
        } else {
            return nil
        }
        var ranges = RangeSet()
        var offset = start
        while offset + recordSize <= bytes.count {
            guard let range = decode(Array(bytes[offset..<(offset + recordSize)])), range.upperBound <= size else { break }
            ranges.insert(range)
            offset += recordSize
        }
        return (ranges, offset, legacy)
    }

    static func makeHeader(size: Int64, sha256: String, partial: FileIdentity?) -> [UInt8] {
        var header = magic
        header += withUnsafeBytes(of: UInt64(clamping: max(0, size)).littleEndian, Array.init)
        var digest = [UInt8](repeating: 0, count: 32)
        let hex = Array(sha256.utf8)
        for i in 0..<min(32, hex.count / 2) {
            digest[i] = UInt8(String(decoding: hex[(2 * i)..<(2 * i + 2)], as: UTF8.self), radix: 16) ?? 0
        }
        header += digest
        header += withUnsafeBytes(of: (partial?.device ?? 0).littleEndian, Array.init)
        header += withUnsafeBytes(of: (partial?.inode ?? 0).littleEndian, Array.init)
        return header
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
