import Foundation
import Synchronization

/// Finds readers that stream through a file — sequential reads, or mmap page faults that
/// walk it, from one or several threads — and says how far ahead to fetch for them.
///
/// Up to 16 streams per file are tracked by the offset they will read next. A read close to
/// a stream's next offset continues it; any other read starts a new stream and fetches only
/// what it asks for. A stream's readahead window is the bytes it has read so far, capped by
/// `maxWindow`: it grows to hundreds of MiB for a full load, while reading a header or one
/// tensor fetches little beyond it.
final class StreamTracker: Sendable {
    struct Stream {
        var next: Int64
        var consumed: Int64
        var prefetchedTo: Int64
        var lastUse: UInt64
    }

    /// The streams and the use counter that orders them, changed together.
    private struct State {
        var streams: [Stream] = []
        var clock: UInt64 = 0

        mutating func access(offset: Int64, length: Int64, fileSize: Int64, maxWindow: Int64) -> Range<Int64>? {
            clock += 1
            let end = min(fileSize, offset + length)
            // Page faults of several threads arrive slightly out of order: tolerate a few MiB.
            let tolerance = max(Int64(4 << 20), length * 4)
            guard let index = streams.firstIndex(where: { offset >= $0.next - tolerance && offset <= $0.next + tolerance }) else {
                if streams.count >= StreamTracker.maxStreams, let oldest = streams.indices.min(by: { streams[$0].lastUse < streams[$1].lastUse }) {
                    streams.remove(at: oldest)
                }
                streams.append(Stream(next: end, consumed: length, prefetchedTo: end, lastUse: clock))
                return nil
            }
            var stream = streams[index]
            stream.consumed += length
            stream.next = max(stream.next, end)
            stream.lastUse = clock
            defer { streams[index] = stream }
            guard maxWindow > 0 else { return nil }
            let window = min(maxWindow, stream.consumed)
            let target = min(fileSize, stream.next + window)
            let from = max(stream.prefetchedTo, stream.next)
            // Ask in steps of at least a quarter window, not per page fault.
            guard target > from, target - from >= min(window / 4, fileSize - from) else { return nil }
            stream.prefetchedTo = target
            return from..<target
        }
    }

    private let state = Mutex(State())
    static let maxStreams = 16

    /// Records a read of `length` bytes at `offset` and returns the range to prefetch, if any.
    func access(offset: Int64, length: Int64, fileSize: Int64, maxWindow: Int64) -> Range<Int64>? {
        state.withLock { $0.access(offset: offset, length: length, fileSize: fileSize, maxWindow: maxWindow) }
    }
}
