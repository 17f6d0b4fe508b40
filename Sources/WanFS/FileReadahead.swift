import Synchronization
import WanCache

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
    /// at again on a later read) and plans by tensor from then on.
    func learnLayout(from fetcher: FileFetcher, timeout: Double, minimumStep: Int64) {
        let take = tensors.withLock { state -> Bool in
            guard state.phase == .waitingForHeader else { return false }
            state.phase = .reading
            return true
        }
        guard take else { return }
        let size = fetcher.content.size
        var outcome = Tensors.Phase.none
        var layout: SafetensorsLayout?
        defer {
            tensors.withLock {
                $0.phase = outcome
                $0.plan = layout.map { TensorReadahead(layout: $0, minimumStep: minimumStep, granule: fetcher.blockSize) }
            }
        }
        // A header that cannot be read or parsed leaves the file to the stream tracker.
        do {
            guard size >= 8 else { return }
            guard fetcher.isPresent(0..<8) else {
                // The first read landed elsewhere (a parallel reader's page fault): ask for the start.
                fetcher.prefetch(0..<min(size, fetcher.blockSize), priority: .readahead)
                outcome = .waitingForHeader
                return
            }
            guard let length = SafetensorsLayout.headerLength(prefix: try Self.bytes(fetcher, 0..<8, timeout: timeout), fileSize: size)
            else { return }
            guard fetcher.isPresent(8..<(8 + length)) else {
                fetcher.prefetch(0..<(8 + length), priority: .readahead)
                outcome = .waitingForHeader
                return
            }
            layout = SafetensorsLayout(header: try Self.bytes(fetcher, 8..<(8 + length), timeout: timeout), fileSize: size)
            // Tensors about as small as a fetch granule (the manifest's chunk) gain nothing
            // from being read by tensor: skipping one saves no fetch, since its chunks are
            // shared with its neighbours. The stream readahead fetches such files faster.
            if let known = layout, known.typicalTensorSize < 2 * fetcher.blockSize { layout = nil }
            outcome = layout == nil ? .none : .known
        } catch {
            return
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
