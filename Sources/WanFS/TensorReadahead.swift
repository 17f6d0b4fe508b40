/// Readahead for a `.safetensors` file whose layout is known: what to fetch ahead of a reader
/// from the tensors it touches, rather than from raw offsets.
///
/// - A tensor counts as read once 2 MiB of it were (all of it if smaller: the kernel's own
///   readahead spills up to `max_read` into the next tensor, which says nothing). Then reads
///   inside it fetch ahead within it: at least `minimumStep` and as much as has been read of
///   it, never past its end. A loader reads a tensor whole (`get_tensor`), so the rest of a
///   tensor arrives in one parallel fetch; a slice of a large tensor (a tensor-parallel rank)
///   fetches about what it reads.
/// - Three tensors read one after the other in name order (the order `safe_open(...).keys()`
///   lists them, which transformers and diffusers follow) make a load: the next tensors in
///   that order are fetched ahead, up to a window that grows with the bytes the load has read
///   (capped by `maxWindow`). The same holds for the file's own order (`cat`, `dd`, loaders
///   that sort by offset), where a tensor also follows the one before when what lies between
///   is less than a fetch granule (tensors as small as the manifest's chunks: every chunk
///   is needed anyway, and a stream fetches them fastest). Both orders are followed at once
///   when they agree.
/// - Three tensors read in a row at the same stride in name order (every other tensor: a half
///   load, a loader that skips one kind of weight) make a strided load: the next tensors at
///   that stride are fetched ahead, whole, up to the same window; nothing between them.
/// - Any other pattern (a few tensors of a large file, random picks) fetches only the tensors
///   it touches: nothing between them.
///
/// A value type: the caller keeps one per open file behind a lock.
struct TensorReadahead: Sendable {
    let layout: SafetensorsLayout
    /// The least a first read of a tensor fetches ahead, and the first window of a load.
    let minimumStep: Int64
    /// What one fetch brings at least (the manifest's chunk, else a block): a tensor that
    /// starts within one granule after the end of the one read before follows it in the
    /// file's order, since skipping what lies between saves no fetch.
    let granule: Int64

    /// A tensor counts as read once this much of it was (or all of it, if smaller): the
    /// kernel reads up to `max_read` past what a page fault asks, so the first bytes of the
    /// tensor after the one being read arrive without anyone reading that tensor.
    static let readBytes: Int64 = 2 << 20
    /// Tensors read in a row, in one order, before the next ones are fetched ahead: two in a
    /// row happen by chance when a reader skips tensors, three rarely do.
    static let runToFollow = 2

    /// Loads interleave (a loader in name order walks several regions of the file in turn):
    /// this many runs are kept, like the stream tracker's streams.
    static let maxRuns = 16

    /// The largest stride followed: a reader taking every eighth tensor or fewer.
    static let maxStride = 8

    /// A run of tensors read one after the other: in name order, in file order, or both.
    private struct Run {
        /// The tensor counted last in this run.
        var last: Int
        var nameRun = 0, fileRun = 0
        /// The run's step in name order when it is more than one (0: none yet), and how many
        /// such steps in a row it made.
        var stride = 0, strideRun = 0
        /// Whether the run's last step in file order passed over a tensor (one smaller than a
        /// granule, else it would not follow).
        var fileSkipped = false
        /// Bytes of the run's tensors: its look-ahead window.
        var bytes: Int64
        /// The furthest place in each order the run's look-ahead has reached.
        var nameFrontier = 0, fileFrontier = 0, strideFrontier = 0
        var lastUse: UInt64
    }

    /// Bytes read of each tensor so far.
    private var consumed: [Int: Int64] = [:]
    private var runs: [Run] = []
    /// The run the tensor counted last joined.
    private var active: Int?
    private var clock: UInt64 = 0
    /// How far each tensor has been asked for (absolute offset): by reads inside it, or by a
    /// load's look-ahead.
    private var requested: [Int: Int64] = [:]
    /// Per stride s (made when a run first looks ahead at it): for each tensor i, the bytes of i, i - s,
    /// i - 2s, ... in name order, so the bytes between two tensors of a strided run are one
    /// subtraction.
    private var strideSums: [Int: [Int64]] = [:]

    init(layout: SafetensorsLayout, minimumStep: Int64 = 16 << 20, granule: Int64 = 0) {
        self.layout = layout
        self.minimumStep = minimumStep
        self.granule = max(0, granule)
    }

    /// Records a read of `length` bytes at `offset`; returns the ranges to fetch ahead, in the
    /// order they will be needed. Empty outside the tensors (header, padding), and for a
    /// tensor not yet counted as read.
    mutating func access(offset: Int64, length: Int64, maxWindow: Int64) -> [Range<Int64>] {
        guard let index = layout.tensor(at: offset) else { return [] }
        let tensor = layout.tensors[index].range
        let readEnd = min(tensor.upperBound, offset + max(0, length))
        let before = consumed[index] ?? 0
        let read = before + (readEnd - offset)
        consumed[index] = read
        let threshold = min(Int64(tensor.count), Self.readBytes)
        if before < threshold && read >= threshold { counted(index) }
        guard maxWindow > 0, read >= threshold else { return [] }
        var wanted: [Range<Int64>] = []

        // Within the tensor: ahead by what has been read of it (at least a step), to its end.
        let target = min(tensor.upperBound, readEnd + min(maxWindow, max(minimumStep, read)))
        let from = max(requested[index] ?? readEnd, readEnd)
        // Ask in steps of a quarter of the distance at least, not per page fault.
        if target > from && (target == tensor.upperBound || target - from >= (target - readEnd) / 4) {
            wanted.append(from..<target)
            requested[index] = target
        }

        // A load: the next tensors in its order, up to the window.
        guard let active else { return wanted }
        var run = runs[active]
        let window = min(maxWindow, max(minimumStep, run.bytes))
        if run.nameRun >= Self.runToFollow {
            let (ranges, frontier) = lookAhead(after: run.last, order: nil, frontier: run.nameFrontier, window: window)
            wanted += ranges
            run.nameFrontier = frontier
        }
        // A strided load that passes over tensors in the file too decides: the file's order
        // would fetch the tensors it skips (a half load of weights with small biases between
        // them follows in the file as well).
        let strided = run.stride > 1 && run.strideRun >= Self.runToFollow
        if run.fileRun >= Self.runToFollow && !(strided && run.fileSkipped) {
            let (ranges, frontier) = lookAhead(after: layout.filePosition[run.last], order: layout.fileOrder, frontier: run.fileFrontier, window: window)
            wanted += ranges
            run.fileFrontier = frontier
        }
        if strided {
            let (ranges, frontier) = strideAhead(after: run.last, stride: run.stride, frontier: run.strideFrontier, window: window)
            wanted += ranges
            run.strideFrontier = frontier
        }
        runs[active] = run
        return wanted
    }

    /// `index` is counted as read: it extends the run whose last tensor it follows (in name
    /// order, in file order with less than a granule between them, or at the run's stride),
    /// or the run counted last when it lies a few tensors after that run's last (a stride
    /// begins), or starts a new one.
    private mutating func counted(_ index: Int) {
        clock += 1
        let size = layout.tensors[index].size
        let strides = 2...Self.maxStride
        let place = runs.firstIndex { index == $0.last + 1 || follows(index, $0.last) || ($0.stride > 1 && index == $0.last + $0.stride) }
            ?? active.flatMap { place in
                // A few tensors on from the run counted last begins a stride there, unless that
                // run is a load already (another reader of the file starts a run of its own).
                let run = runs[place]
                let established = run.nameRun >= Self.runToFollow || run.fileRun >= Self.runToFollow
                return strides.contains(index - run.last) && !established ? place : nil
            }
        if let place {
            var run = runs[place]
            let step = index - run.last
            run.nameRun = step == 1 ? run.nameRun + 1 : 0
            run.fileRun = follows(index, run.last) ? run.fileRun + 1 : 0
            run.fileSkipped = layout.filePosition[index] != layout.filePosition[run.last] + 1
            if step > 1 && step == run.stride {
                run.strideRun += 1
            } else if strides.contains(step) {
                (run.stride, run.strideRun, run.strideFrontier) = (step, 1, 0)
            } else {
                (run.stride, run.strideRun) = (0, 0)
            }
            run.bytes += size
            run.last = index
            run.lastUse = clock
            runs[place] = run
            active = place
            return
        }
        if runs.count >= Self.maxRuns, let oldest = runs.indices.min(by: { runs[$0].lastUse < runs[$1].lastUse }) {
            runs.remove(at: oldest)
        }
        runs.append(Run(last: index, bytes: size, lastUse: clock))
        active = runs.count - 1
    }

    /// The tensors after `last` at `stride` in name order, whole, until `window` bytes of them
    /// lie ahead of the reader; each asked for once. Starts at the frontier (returned moved
    /// on), which lies on the same stride: the run's tensors all do.
    private mutating func strideAhead(after last: Int, stride: Int, frontier: Int, window: Int64) -> ([Range<Int64>], frontier: Int) {
        let sums = strideSum(stride)
        let count = layout.tensors.count
        var frontier = frontier
        var wanted: [Range<Int64>] = []
        // The tensor before the frontier may have been asked for in part.
        var next = max(last + stride, frontier - stride)
        while next < count {
            let ahead = sums[next - stride] - sums[last]   // the run's tensors between last and next
            guard ahead < window else { break }
            let range = layout.tensors[next].range
            let upTo = range.lowerBound + min(range.upperBound - range.lowerBound, window - ahead)
            let from = max(range.lowerBound, requested[next] ?? range.lowerBound)
            if upTo > from {
                wanted.append(from..<upTo)
                requested[next] = upTo
            }
            frontier = max(frontier, next + stride)
            next += stride
        }
        return (wanted, frontier)
    }

    /// ``strideSums`` for `stride`, made on first use.
    private mutating func strideSum(_ stride: Int) -> [Int64] {
        if let sums = strideSums[stride] { return sums }
        var sums = layout.tensors.map(\.size)
        for index in sums.indices where index >= stride { sums[index] += sums[index - stride] }
        strideSums[stride] = sums
        return sums
    }

    /// Whether `index` comes after `last` in the file with less than a granule between them.
    private func follows(_ index: Int, _ last: Int) -> Bool {
        layout.filePosition[index] > layout.filePosition[last]
            && layout.tensors[index].range.lowerBound - layout.tensors[last].range.upperBound <= granule
    }

    /// The tensors after `place` in an order (`order` maps places to tensor indices; nil is
    /// name order, where places are indices), whole, until `window` bytes lie ahead of the
    /// reader; each asked for once. Starts at the frontier (returned moved on): a read inside
    /// a load costs a few steps, not a walk over every tensor of the window.
    private mutating func lookAhead(after place: Int, order: [Int]?, frontier: Int, window: Int64) -> ([Range<Int64>], frontier: Int) {
        let prefix = order == nil ? layout.namePrefix : layout.filePrefix
        let count = layout.tensors.count
        let start = place + 1
        guard start < count else { return ([], frontier) }
        var frontier = frontier
        let base = prefix[start]
        var wanted: [Range<Int64>] = []
        // The tensor before the frontier may have been asked for in part.
        var next = max(start, frontier - 1)
        while next < count && prefix[next] - base < window {
            let index = order?[next] ?? next
            let range = layout.tensors[index].range
            // A tensor larger than what is left of the window is asked for in part; the rest
            // when the reader gets closer.
            let upTo = range.lowerBound + min(range.upperBound - range.lowerBound, window - (prefix[next] - base))
            let from = max(range.lowerBound, requested[index] ?? range.lowerBound)
            if upTo > from {
                wanted.append(from..<upTo)
                requested[index] = upTo
            }
            frontier = max(frontier, next + 1)
            next += 1
        }
        return (wanted, frontier)
    }
}
