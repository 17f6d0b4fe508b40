import Synchronization
import WanSystem

/// Where fetched bytes go: written at absolute offsets of the file being fetched, as they
/// arrive, with no whole-body buffering.
///
/// The engine calls `write` from the thread running the transfer, in order within one
/// transfer; a sink shared by parallel transfers must accept writes from several threads
/// at disjoint offsets.
public protocol ByteSink: Sendable {
    /// Stores `bytes` at `offset` (an offset in the remote file). Throwing aborts the transfer.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws
}

/// Writes into a caller's memory: offset `base` of the file lands at the buffer's start.
/// The caller keeps the buffer alive until the read returns.
public struct BufferSink: ByteSink, @unchecked Sendable {
    public let buffer: UnsafeMutableRawBufferPointer
    public let base: Int64

    public init(_ buffer: UnsafeMutableRawBufferPointer, base: Int64) {
        self.buffer = buffer
        self.base = base
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        let start = Int(offset - base)
        guard start >= 0, start + bytes.count <= buffer.count else {
            throw SourceError(.protocolViolation, source: "buffer", message: "write of \(bytes.count) bytes at \(offset) is outside the buffer [\(base), \(base + Int64(buffer.count)))")
        }
        guard let target = buffer.baseAddress, let from = bytes.baseAddress else { return }
        (target + start).copyMemory(from: from, byteCount: bytes.count)
    }
}

/// Writes into an open file with pwrite; offset `base` of the remote file lands at `fileOffset`.
public struct FileSink: ByteSink {
    public let descriptor: FileDescriptor
    public let base: Int64
    public let fileOffset: Int64

    public init(_ descriptor: FileDescriptor, base: Int64 = 0, fileOffset: Int64 = 0) {
        self.descriptor = descriptor
        self.base = base
        self.fileOffset = fileOffset
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        try descriptor.write(bytes, at: fileOffset + (offset - base))
    }
}

/// Collects bytes in memory (for small bodies: listings, JSON, tests).
public final class DataSink: ByteSink {
    private let storage = Mutex<[UInt8]>([])
    private let base: Int64

    public init(base: Int64 = 0) { self.base = base }

    public var bytes: [UInt8] { storage.withLock { $0 } }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        let start = Int(offset - base)
        storage.withLock { data in
            if data.count < start + bytes.count { data.append(contentsOf: repeatElement(0, count: start + bytes.count - data.count)) }
            data.replaceSubrange(start..<(start + bytes.count), with: bytes)
        }
    }
}

/// Counts and drops bytes (benchmarks, reachability checks).
public final class DiscardSink: ByteSink {
    private let count = Atomic<Int64>(0)
    public init() {}
    public var bytesWritten: Int64 { count.load(ordering: .relaxed) }
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        count.add(Int64(bytes.count), ordering: .relaxed)
    }
}
