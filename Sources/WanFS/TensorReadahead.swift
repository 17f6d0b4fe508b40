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
///   that sort by offset). Both orders are followed at once when they agree.
/// - Any other pattern (every other tensor, a few tensors of a large file) fetches only the
///   tensors it touches: nothing between them.
///
/// A value type: the caller keeps one per open file behind a lock.
struct TensorReadahead: Sendable {
    let layout: SafetensorsLayout
    /// The least a first read of a tensor fetches ahead, and the first window of a load.
    let minimumStep: Int64

    /// A tensor counts as read once this much of it was (or all of it, if smaller): the
    /// kernel reads up to `max_read` past what a page fault asks, so the first bytes of the
    /// tensor after the one being read arrive without anyone reading that tensor.
    static let readBytes: Int64 = 2 << 20
    /// Tensors read in a row, in one order, before the next ones are fetched ahead: two in a
    /// row happen by chance when a reader skips tensors, three rarely do.
    static let runToFollow = 2

    /// Bytes read of each tensor so far.
    private var consumed: [Int: Int64] = [:]
    /// The tensor counted as read last, and the runs it extends: consecutive tensors read in
    /// name order / in file order, and the bytes of the longer run.
    private var last: Int?
    private var nameRun = 0, fileRun = 0
    private var runBytes: Int64 = 0
    /// How far each tensor has been asked for (absolute offset): by reads inside it, or by a
    /// load's look-ahead.
    private var requested: [Int: Int64] = [:]
    /// The furthest place in each order the look-ahead has reached.
    private var nameFrontier = 0, fileFrontier = 0

    init(layout: SafetensorsLayout, minimumStep: Int64 = 16 << 20) {
        self.layout = layout
        self.minimumStep = minimumStep
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
        guard let last else { return wanted }
        let window = min(maxWindow, max(minimumStep, runBytes))
        if nameRun >= Self.runToFollow {
            let (ranges, frontier) = lookAhead(after: last, order: nil, frontier: nameFrontier, window: window)
            wanted += ranges
            nameFrontier = frontier
        }
        if fileRun >= Self.runToFollow {
            let (ranges, frontier) = lookAhead(after: layout.filePosition[last], order: layout.fileOrder, frontier: fileFrontier, window: window)
            wanted += ranges
            fileFrontier = frontier
        }
        return wanted
    }

    /// `index` is counted as read: it extends the runs that end at the tensor read before it.
    private mutating func counted(_ index: Int) {
        if let last {
            nameRun = index == last + 1 ? nameRun + 1 : 0
            fileRun = layout.filePosition[index] == layout.filePosition[last] + 1 ? fileRun + 1 : 0
        }
        let size = layout.tensors[index].size
        runBytes = nameRun > 0 || fileRun > 0 ? runBytes + size : size
        last = index
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
