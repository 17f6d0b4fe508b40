/// A set of byte offsets stored as sorted, disjoint, non-adjacent half-open ranges.
public struct RangeSet: Sendable, Equatable, CustomStringConvertible {
    public private(set) var ranges: [Range<Int64>] = []

    public init() {}

    public init(_ ranges: [Range<Int64>]) {
        for range in ranges { insert(range) }
    }

    public var isEmpty: Bool { ranges.isEmpty }

    /// Bytes covered.
    public var count: Int64 { ranges.reduce(0) { $0 + Int64($1.count) } }

    /// Adds `range`, merging with neighbours it overlaps or touches.
    public mutating func insert(_ range: Range<Int64>) {
        guard !range.isEmpty else { return }
        var lower = range.lowerBound
        var upper = range.upperBound
        // First range that ends at or after `lower` (could merge), via binary search.
        var first = firstIndex(endingAtOrAfter: lower)
        var last = first
        while last < ranges.count && ranges[last].lowerBound <= upper {
            lower = min(lower, ranges[last].lowerBound)
            upper = max(upper, ranges[last].upperBound)
            last += 1
        }
        if first > ranges.count { first = ranges.count }
        ranges.replaceSubrange(first..<last, with: [lower..<upper])
    }

    /// Takes `range` out, splitting a range it falls inside.
    public mutating func remove(_ range: Range<Int64>) {
        guard !range.isEmpty else { return }
        var kept: [Range<Int64>] = []
        for existing in ranges {
            if existing.upperBound <= range.lowerBound || existing.lowerBound >= range.upperBound {
                kept.append(existing)
                continue
            }
            if existing.lowerBound < range.lowerBound { kept.append(existing.lowerBound..<range.lowerBound) }
            if existing.upperBound > range.upperBound { kept.append(range.upperBound..<existing.upperBound) }
        }
        ranges = kept
    }

    /// Whether every byte of `range` is in the set.
    public func contains(_ range: Range<Int64>) -> Bool {
        guard !range.isEmpty else { return true }
        let i = firstIndex(endingAtOrAfter: range.lowerBound + 1)
        return i < ranges.count && ranges[i].lowerBound <= range.lowerBound && ranges[i].upperBound >= range.upperBound
    }

    /// The parts of `range` not in the set, in order.
    public func missing(in range: Range<Int64>) -> [Range<Int64>] {
        guard !range.isEmpty else { return [] }
        var gaps: [Range<Int64>] = []
        var cursor = range.lowerBound
        var i = firstIndex(endingAtOrAfter: cursor + 1)
        while cursor < range.upperBound {
            guard i < ranges.count, ranges[i].lowerBound < range.upperBound else {
                gaps.append(cursor..<range.upperBound)
                break
            }
            if ranges[i].lowerBound > cursor { gaps.append(cursor..<ranges[i].lowerBound) }
            cursor = max(cursor, ranges[i].upperBound)
            i += 1
        }
        return gaps
    }

    /// How far the set covers `0..<n` without a gap.
    public var contiguousPrefix: Int64 {
        guard let first = ranges.first, first.lowerBound == 0 else { return 0 }
        return first.upperBound
    }

    /// Index of the first range whose upper bound is >= `offset`.
    private func firstIndex(endingAtOrAfter offset: Int64) -> Int {
        var low = 0, high = ranges.count
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].upperBound < offset { low = mid + 1 } else { high = mid }
        }
        return low
    }

    public var description: String {
        "[" + ranges.map { "\($0.lowerBound)..<\($0.upperBound)" }.joined(separator: ", ") + "]"
    }
}
