import Foundation
import Synchronization
import WanSources
import WanSystem

/// The sink of one fetch job: gathers the bytes of a transfer (which arrive in order, in
/// pieces of ~16 KiB) into writes of up to `bufferSize` to the partial file, and reports each
/// block of the job's span once every byte of it is in the file.
///
/// Writing each piece as it came meant 65 000 `pwrite`s per GiB, contending on the file's
/// inode lock with the other fetch threads.
final class BlockSink: ResumableSink, Sendable {
    private let inner: FileSink
    private let span: Range<Int64>
    private let blockSize: Int64
    private let onBlock: @Sendable (Range<Int64>, String, String?) throws -> Void
    private let writeLock: WriteLock?
    private let digest: WholeFileDigest?
    private let progress: FetchProgress?
    static let bufferSize = 1 << 20

    /// What changes as bytes arrive, under one lock.
    private struct State {
        var written: Int64
        var reported: Int64
        /// Bytes received but not yet in the file, starting at `pendingStart`.
        var pending: [UInt8] = []
        var pendingStart: Int64 = 0
        /// The current block's sha256 over the bytes as they went by, up to `digestedTo`
        /// (nil when they did not arrive as one in-order run: the fetcher then reads them back).
        var blockDigest: SHA256Hasher?
        var digestedTo: Int64
        /// The source delivering the bytes now.
        var source = ""
    }
    private let state: Mutex<State>

    /// - Parameter digestBlocks: compute each block's sha256 from the bytes in passing, and
    ///   hand it to `onBlock` (saves reading every verified chunk back from the file).
    /// - Parameter writeLock: held around each write into the file (shared by the sinks of one file).
    /// - Parameter digest: the file's whole-file digest, told of every write (it hashes the
    ///   bytes that continue it from memory, in passing).
    init(_ inner: FileSink, span: Range<Int64>, blockSize: Int64, digestBlocks: Bool = false, writeLock: WriteLock? = nil,
         digest: WholeFileDigest? = nil, progress: FetchProgress? = nil,
         onBlock: @escaping @Sendable (Range<Int64>, String, String?) throws -> Void) {
        self.inner = inner
        self.writeLock = writeLock
        self.digest = digest
        self.progress = progress
        self.span = span
        self.blockSize = blockSize
        self.onBlock = onBlock
        state = Mutex(State(written: span.lowerBound, reported: span.lowerBound,
                            blockDigest: digestBlocks ? SHA256Hasher() : nil, digestedTo: span.lowerBound))
    }

    /// The source delivering the bytes now (named in each block's report).
    var source: String {
        get { state.withLock { $0.source } }
        set { state.withLock { $0.source = newValue } }
    }

    var resumePosition: Int64 { state.withLock { $0.reported } }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        progress?.progressed(bytes: bytes.count)
        try state.withLock { state in
            // A piece that straddles a block boundary is taken one block's part at a time, so each
            // block's digest sees exactly its own bytes. (Pieces are not aligned to blocks: the
            // response headers shift them. Taken whole, nearly every chunk had to be read back.)
            // Without digests a piece is taken whole, as before.
            guard state.blockDigest != nil else { return try take(bytes, at: offset, &state) }
            var start = 0
            repeat {
                let at = offset + Int64(start)
                let end = min(bytes.count, start + Int((at / blockSize + 1) * blockSize - at))
                try take(UnsafeRawBufferPointer(rebasing: bytes[start..<end]), at: at, &state)
                start = end
            } while start < bytes.count
        }
    }

    /// Takes bytes that lie within one block.
    private func take(_ bytes: UnsafeRawBufferPointer, at offset: Int64, _ state: inout State) throws {
        // Bytes before what is already reported belong to blocks that may be served: never overwrite them.
        let skip = max(0, min(Int64(bytes.count), state.reported - offset))
        if skip < Int64(bytes.count) {
            try buffer(UnsafeRawBufferPointer(rebasing: bytes[Int(skip)...]), at: offset + skip, &state)
        }
        // In order, or sent again from an earlier point (the next source starts over from the
        // last reported block): what lay beyond these bytes came from the source before and
        // is stale until rewritten, so a block counts as written only once they cover it.
        if offset <= state.written { state.written = max(state.reported, offset + Int64(bytes.count)) }
        while state.reported < span.upperBound {
            let end = min(span.upperBound, (state.reported / blockSize + 1) * blockSize)
            guard state.written >= end else { break }
            try flush(&state)   // a block is reported only once its bytes are in the file
            let digest = state.digestedTo == end ? state.blockDigest?.finalize().hex : nil
            try onBlock(state.reported..<end, state.source, digest)
            state.reported = end
            if state.blockDigest != nil {
                state.blockDigest = SHA256Hasher()
                state.digestedTo = end
            }
        }
    }

    private func buffer(_ bytes: UnsafeRawBufferPointer, at offset: Int64, _ state: inout State) throws {
        if let hasher = state.blockDigest {
            if offset == state.reported && state.digestedTo != state.reported {   // the block starts over (another source)
                state.blockDigest = SHA256Hasher()
                state.digestedTo = state.reported
            }
            if offset == state.digestedTo {
                (state.blockDigest ?? hasher).update(bytes)
                state.digestedTo += Int64(bytes.count)
            } else {
                state.digestedTo = -1   // out of order: this block is read back instead
            }
        }
        let pendingEnd = state.pendingStart + Int64(state.pending.count)
        if !state.pending.isEmpty && offset != pendingEnd {
            if offset >= state.pendingStart && offset < pendingEnd {
                state.pending.removeLast(Int(pendingEnd - offset))   // another source resends from here
            } else {
                try flush(&state)
            }
        }
        if state.pending.isEmpty {
            state.pendingStart = offset
            state.pending.reserveCapacity(Self.bufferSize)
        }
        state.pending.append(contentsOf: bytes)
        if state.pending.count >= Self.bufferSize { try flush(&state) }
    }

    private func flush(_ state: inout State) throws {
        guard !state.pending.isEmpty else { return }
        let start = state.pendingStart
        try state.pending.withUnsafeBytes { bytes in
            try writeLock.withLockIfAny { try inner.write(bytes, at: start) }
        }
        // Outside the write lock: hashing 1 MiB must not hold up the other jobs' writes.
        state.pending.withUnsafeBytes { digest?.wrote($0, at: start) }
        state.pendingStart += Int64(state.pending.count)
        state.pending.removeAll(keepingCapacity: true)
    }
}

/// The lock the sinks of one file hold around each write into it (writes of different jobs
/// then never contend on the file's inode lock at once).
final class WriteLock: Sendable {
    private let mutex = Mutex(())

    init() {}

    func withLock<T>(_ body: () throws -> T) rethrows -> T { try mutex.withLock { _ in try body() } }
}

extension Optional where Wrapped == WriteLock {
    /// `body` under the lock, or without one when there is none.
    func withLockIfAny<T>(_ body: () throws -> T) rethrows -> T {
        if let lock = self { return try lock.withLock(body) }
        return try body()
    }
}
