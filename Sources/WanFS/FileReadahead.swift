import Foundation
import Synchronization
import WanCache
import WanSystem

/// What to fetch ahead of the readers of one file. A `.safetensors` file gets the
/// tensor-aware plan (``TensorReadahead``) for reads of its data once its header has arrived,
/// when its tensors are large against a fetch granule (half of its bytes in tensors of at
/// least two chunks); everything else (other files, the header itself, a header that does
/// not parse, tensors as small as chunks) gets the stream tracker's offset-based readahead.
final class FileReadahead: Sendable {
    private struct Tensors {
        enum Phase { case waitingForHeader, reading, known, none }
        var phase: Phase
        var plan: TensorReadahead?
    }

    private let stream = StreamTracker()
    private let tensors: Mutex<Tensors>

    init(path: String) {
        tensors = Mutex(Tensors(phase: path.hasSuffix(".safetensors") ? .waitingForHeader : .none, plan: nil))
    }

    /// Records a read and returns the ranges to fetch ahead, in the order they will be needed.
    func access(offset: Int64, length: Int64, fileSize: Int64, maxWindow: Int64) -> [Range<Int64>] {
        let planned = tensors.withLock { state -> [Range<Int64>]? in
            guard let dataStart = state.plan?.layout.dataStart, offset >= dataStart else { return nil }
            return state.plan?.access(offset: offset, length: length, maxWindow: maxWindow)
        }
        if let planned { return planned }
        return stream.access(offset: offset, length: length, fileSize: fileSize, maxWindow: maxWindow).map { [$0] } ?? []
    }

    /// Once the reader has read into a `.safetensors` file, reads its header from what has
    /// arrived (never waiting on the network: a header not here yet is asked for, and looked
    /// at again on a later read) and plans by tensor from then on. With `inBackground`, the
    /// header is read and parsed on a thread of its own, so the read that found it here is
    /// answered first (a 25 KB header took about 2 ms before a cold first byte's reply).
    func learnLayout(from fetcher: FileFetcher, timeout: Double, minimumStep: Int64, inBackground: Bool = false) {
        let take = tensors.withLock { state -> Bool in
            guard state.phase == .waitingForHeader else { return false }
            state.phase = .reading
            return true
        }
        guard take else { return }
        let size = fetcher.content.size
        guard size >= 8 else { return finish(.none, nil, fetcher, minimumStep) }
        guard fetcher.isPresent(0..<8) else {
            // The first read landed elsewhere (a parallel reader's page fault): ask for the start.
            fetcher.prefetch(0..<min(size, fetcher.blockSize), priority: .readahead)
            return finish(.waitingForHeader, nil, fetcher, minimumStep)
        }
        guard inBackground else { return parse(fetcher, timeout: timeout, minimumStep: minimumStep) }
        let thread = Thread { [self] in
            ThreadName.set("wan-layout")
            parse(fetcher, timeout: timeout, minimumStep: minimumStep)
        }
        thread.start()
    }

    /// Reads and parses the header (its first 8 bytes are here); a header that cannot be read
    /// or parsed leaves the file to the stream tracker.
    private func parse(_ fetcher: FileFetcher, timeout: Double, minimumStep: Int64) {
        let size = fetcher.content.size
        do {
            guard let length = SafetensorsLayout.headerLength(prefix: try Self.bytes(fetcher, 0..<8, timeout: timeout), fileSize: size)
            else { return finish(.none, nil, fetcher, minimumStep) }
            guard fetcher.isPresent(8..<(8 + length)) else {
                fetcher.prefetch(0..<(8 + length), priority: .readahead)
                return finish(.waitingForHeader, nil, fetcher, minimumStep)
            }
            var layout = SafetensorsLayout(header: try Self.bytes(fetcher, 8..<(8 + length), timeout: timeout), fileSize: size)
            // Tensors about as small as a fetch granule (the manifest's chunk) gain nothing
            // from being read by tensor: skipping one saves no fetch, since its chunks are
            // shared with its neighbours. The stream readahead fetches such files faster.
            if let known = layout, known.typicalTensorSize < 2 * fetcher.blockSize { layout = nil }
            finish(layout == nil ? .none : .known, layout, fetcher, minimumStep)
        } catch {
            finish(.none, nil, fetcher, minimumStep)
        }
    }

    private func finish(_ phase: Tensors.Phase, _ layout: SafetensorsLayout?, _ fetcher: FileFetcher, _ minimumStep: Int64) {
        tensors.withLock {
            $0.phase = phase
            $0.plan = layout.map { TensorReadahead(layout: $0, minimumStep: minimumStep, granule: fetcher.blockSize) }
        }
    }

    /// The bytes of `range`, already present: a hint is read at readahead priority, never
    /// ahead of a reader's demand.
    private static func bytes(_ fetcher: FileFetcher, _ range: Range<Int64>, timeout: Double) throws -> [UInt8] {
        let file = try fetcher.prepareRead(range, priority: .readahead, timeout: timeout)
        let bytes = try file.descriptor.read(count: range.count, at: range.lowerBound)
        guard bytes.count == range.count else { throw FSError.io("short read of the safetensors header") }
        return bytes
    }
}
