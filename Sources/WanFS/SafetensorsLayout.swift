import Foundation

/// Where each tensor of a `.safetensors` file lies, read from the file's header: an 8-byte
/// little-endian length, then that many bytes of JSON mapping each tensor name to its dtype,
/// shape and `data_offsets` (relative to the end of the header).
///
/// Loaders ask for tensors by name in sorted order (`safe_open(...).keys()`, transformers,
/// diffusers), while writers lay them out by dtype, then name (or in insertion order): the two
/// orders differ whenever dtypes mix. The layout keeps both, so the mount can fetch ahead in
/// the order the reader will ask.
///
/// The header is input from a file: every number is checked (ranges inside the file, no
/// overflow, a bounded header and tensor count). A header that does not parse gives no
/// layout, and the reader gets the plain readahead: a layout is only ever a hint for what to
/// fetch, never a reason to serve or refuse bytes.
struct SafetensorsLayout: Sendable, Equatable {
    struct Tensor: Sendable, Equatable {
        let name: String
        /// Absolute byte range in the file.
        let range: Range<Int64>
        var size: Int64 { range.upperBound - range.lowerBound }
    }

    /// Where the data region starts: 8 + the header's length.
    let dataStart: Int64
    /// Every tensor, sorted by name: the order loaders ask for them.
    let tensors: [Tensor]
    /// Indices into `tensors`, sorted by offset: the order of the file.
    let fileOrder: [Int]
    /// Position of each tensor in `fileOrder`.
    let filePosition: [Int]
    /// Bytes of the tensors before each place, in name order and in file order (count + 1 entries).
    let namePrefix: [Int64]
    let filePrefix: [Int64]

    /// The reference implementation refuses headers over 100 MB.
    static let maxHeaderLength: Int64 = 100_000_000
    static let maxTensors = 1_000_000

    /// The header's length from the file's first 8 bytes, when it is plausible for a file of
    /// `fileSize` bytes.
    static func headerLength(prefix: [UInt8], fileSize: Int64) -> Int64? {
        guard prefix.count >= 8 else { return nil }
        var length: UInt64 = 0
        for (index, byte) in prefix.prefix(8).enumerated() { length |= UInt64(byte) << (8 * UInt64(index)) }
        guard length >= 2, length <= UInt64(maxHeaderLength), Int64(length) <= fileSize - 8 else { return nil }
        return Int64(length)
    }

    /// Parses the header (the JSON bytes after the 8-byte length) of a file of `fileSize` bytes.
    init?(header: [UInt8], fileSize: Int64) {
        guard Int64(header.count) <= Self.maxHeaderLength, fileSize >= 8 + Int64(header.count) else { return nil }
        let dataStart = 8 + Int64(header.count)
        let dataSize = fileSize - dataStart
        guard let object = try? JSONDecoder().decode([String: Entry].self, from: Data(header)),
              object.count <= Self.maxTensors + 1 else { return nil }
        var tensors: [Tensor] = []
        tensors.reserveCapacity(object.count)
        for (name, entry) in object where name != "__metadata__" {
            guard let offsets = entry.offsets, offsets.count == 2, offsets[0] <= offsets[1],
                  offsets[1] <= UInt64(dataSize) else { return nil }
            tensors.append(Tensor(name: name, range: (dataStart + Int64(offsets[0]))..<(dataStart + Int64(offsets[1]))))
        }
        // Python sorts str keys by code point; Swift's String order is by Unicode scalars too.
        tensors.sort { (a: Tensor, b: Tensor) in a.name.unicodeScalars.lexicographicallyPrecedes(b.name.unicodeScalars) }
        // By start; of tensors that share a start, the empty ones first, so the last tensor that
        // starts at or before an offset is the only one that can hold it.
        let fileOrder = tensors.indices.sorted {
            (tensors[$0].range.lowerBound, tensors[$0].range.isEmpty ? 0 : 1, $0) < (tensors[$1].range.lowerBound, tensors[$1].range.isEmpty ? 0 : 1, $1)
        }
        // Tensors never overlap in a real file (the reference reader refuses it); that also
        // bounds every sum below by the file's size.
        for (earlier, later) in zip(fileOrder, fileOrder.dropFirst())
        where tensors[later].range.lowerBound < tensors[earlier].range.upperBound {
            return nil
        }
        var position = [Int](repeating: 0, count: tensors.count)
        for (place, index) in fileOrder.enumerated() { position[index] = place }
        self.dataStart = dataStart
        self.tensors = tensors
        self.fileOrder = fileOrder
        filePosition = position
        namePrefix = tensors.reduce(into: [0]) { $0.append($0[$0.count - 1] + $1.size) }
        filePrefix = fileOrder.reduce(into: [0]) { $0.append($0[$0.count - 1] + tensors[$1].size) }
    }

    /// One header entry: a tensor's `data_offsets` (whole, non-negative numbers: anything
    /// else fails the decoding), or `__metadata__`, which has none.
    private struct Entry: Decodable {
        let offsets: [UInt64]?
        enum CodingKeys: String, CodingKey { case offsets = "data_offsets" }
    }

    /// The size of tensor that holds the middle byte of the data, when tensors are sorted by
    /// size: half of the bytes lie in tensors at least this large (a median by bytes, not by
    /// count: the many small norms and biases of a model hold few of its bytes).
    var typicalTensorSize: Int64 {
        let sizes = tensors.map(\.size).sorted()
        let total = sizes.reduce(0, +)
        var seen: Int64 = 0
        for size in sizes {
            seen += size
            if seen * 2 >= total { return size }
        }
        return 0
    }

    /// The tensor (index into `tensors`) whose bytes hold `offset`, if any (not the header,
    /// not padding between tensors). Empty tensors hold nothing.
    func tensor(at offset: Int64) -> Int? {
        guard offset >= dataStart else { return nil }
        // The last tensor in file order that starts at or before `offset`.
        var low = 0, high = fileOrder.count
        while low < high {
            let middle = (low + high) / 2
            if tensors[fileOrder[middle]].range.lowerBound <= offset { low = middle + 1 } else { high = middle }
        }
        guard low > 0 else { return nil }
        let index = fileOrder[low - 1]
        return tensors[index].range.contains(offset) ? index : nil
    }
}
