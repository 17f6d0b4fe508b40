import Foundation
import WanSources
import WanSystem

/// The sink of one fetch job: gathers the bytes of a transfer (which arrive in order, in
/// pieces of ~16 KiB) into writes of up to `bufferSize` to the partial file, and reports each
/// block of the job's span once every byte of it is in the file.
///
/// Writing each piece as it came meant 65 000 `pwrite`s per GiB, contending on the file's
/// inode lock with the other fetch threads.
final class BlockSink: ResumableSink, @unchecked Sendable {
    private let inner: FileSink
    private let span: Range<Int64>
    private let blockSize: Int64
    private let onBlock: (Range<Int64>, String, String?) throws -> Void
    private let writeLock: NSLock?
    private let digest: WholeFileDigest?
    private let progress: FetchProgress?
    private let lock = NSLock()
    private var written: Int64
    private var reported: Int64
    /// Bytes received but not yet in the file, starting at `pendingStart`.
    private var pending: [UInt8] = []
    private var pendingStart: Int64 = 0
    static let bufferSize = 1 << 20
    /// The current block's sha256 over the bytes as they went by, up to `digestedTo`
    /// (nil when they did not arrive as one in-order run: the fetcher then reads them back).
    private var blockDigest: SHA256Hasher?
    private var digestedTo: Int64
    /// The source delivering the bytes now.
    var source = ""

    /// - Parameter digestBlocks: compute each block's sha256 from the bytes in passing, and
    ///   hand it to `onBlock` (saves reading every verified chunk back from the file).
    /// - Parameter writeLock: held around each write into the file (shared by the sinks of one file).
    /// - Parameter digest: the file's whole-file digest, told of every write (it hashes the
    ///   bytes that continue it from memory, in passing).
    init(_ inner: FileSink, span: Range<Int64>, blockSize: Int64, digestBlocks: Bool = false, writeLock: NSLock? = nil,
         digest: WholeFileDigest? = nil, progress: FetchProgress? = nil,
         onBlock: @escaping (Range<Int64>, String, String?) throws -> Void) {
        self.inner = inner
        self.writeLock = writeLock
        self.digest = digest
        self.progress = progress
        self.span = span
        self.blockSize = blockSize
        self.onBlock = onBlock
        written = span.lowerBound
        reported = span.lowerBound
        digestedTo = span.lowerBound
        blockDigest = digestBlocks ? SHA256Hasher() : nil
    }

    var resumePosition: Int64 {
        lock.lock()
        defer { lock.unlock() }
        return reported
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        progress?.progressed(bytes: bytes.count)
        lock.lock()
        defer { lock.unlock() }
        // A piece that straddles a block boundary is taken one block's part at a time, so each
        // block's digest sees exactly its own bytes. (Pieces are not aligned to blocks: the
        // response headers shift them. Taken whole, nearly every chunk had to be read back.)
        // Without digests a piece is taken whole, as before.
        guard blockDigest != nil else { return try take(bytes, at: offset) }
        var start = 0
        repeat {
            let at = offset + Int64(start)
            let end = min(bytes.count, start + Int((at / blockSize + 1) * blockSize - at))
            try take(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), at: at)
            start = end
        } while start < bytes.count
    }

    /// Takes bytes that lie within one block.
    private func take(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        // Bytes before what is already reported belong to blocks that may be served: never overwrite them.
        let skip = max(0, min(Int64(bytes.count), reported - offset))
        if skip < Int64(bytes.count) {
            try buffer(UnsafeRawBufferPointer(rebasing: bytes[Int(skip)...]), at: offset + skip)
        }
        // In order, or sent again from an earlier point (the next source starts over from the
        // last reported block): what lay beyond these bytes came from the source before and
        // is stale until rewritten, so a block counts as written only once they cover it.
        if offset <= written { written = max(reported, offset + Int64(bytes.count)) }
        while reported < span.upperBound {
            let end = min(span.upperBound, (reported / blockSize + 1) * blockSize)
            guard written >= end else { break }
            try flush()   // a block is reported only once its bytes are in the file
            let digest = digestedTo == end ? blockDigest?.finalize().hex : nil
            try onBlock(reported..<end, source, digest)
            reported = end
            if blockDigest != nil {
                blockDigest = SHA256Hasher()
                digestedTo = end
            }
        }
    }

    private func buffer(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        if let hasher = blockDigest {
            if offset == reported && digestedTo != reported {   // the block starts over (another source)
                blockDigest = SHA256Hasher()
                digestedTo = reported
            }
            if offset == digestedTo {
                (blockDigest ?? hasher).update(bytes)
                digestedTo += Int64(bytes.count)
            } else {
                digestedTo = -1   // out of order: this block is read back instead
            }
        }
        let pendingEnd = pendingStart + Int64(pending.count)
        if !pending.isEmpty && offset != pendingEnd {
            if offset >= pendingStart && offset < pendingEnd {
                pending.removeLast(Int(pendingEnd - offset))   // another source resends from here
            } else {
                try flush()
            }
        }
        if pending.isEmpty {
            pendingStart = offset
            pending.reserveCapacity(Self.bufferSize)
        }
        pending.append(contentsOf: bytes)
        if pending.count >= Self.bufferSize { try flush() }
    }

    private func flush() throws {
        guard !pending.isEmpty else { return }
        try pending.withUnsafeBytes { bytes in
            writeLock?.lock()
            defer { writeLock?.unlock() }
            try inner.write(bytes, at: pendingStart)
        }
        // Outside the write lock: hashing 1 MiB must not hold up the other jobs' writes.
        pending.withUnsafeBytes { digest?.wrote($0, at: pendingStart) }
        pendingStart += Int64(pending.count)
        pending.removeAll(keepingCapacity: true)
    }
}
