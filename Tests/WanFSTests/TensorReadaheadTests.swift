import Foundation
import Testing
import WanTestSupport
@testable import WanFS

/// The safetensors header parser (hostile input: never a crash, never a layout from a lying
/// header) and the tensor-aware readahead, driven by the reads a loader makes.
@Suite struct TensorReadaheadTests {
    /// A header as writers make it: tensors laid out in `fileOrder` (name, size), names sorted
    /// differently from the layout when the caller says so. Returns the header JSON and file size.
    static func header(_ fileOrder: [(String, Int64)]) -> (bytes: [UInt8], fileSize: Int64) {
        var entries: [String] = []
        var offset: Int64 = 0
        for (name, size) in fileOrder {
            entries.append("\"\(name)\":{\"dtype\":\"F32\",\"shape\":[\(size / 4)],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        entries.append("\"__metadata__\":{\"format\":\"pt\"}")
        var bytes = Array("{\(entries.joined(separator: ","))}".utf8)
        bytes += [UInt8](repeating: 0x20, count: (8 - bytes.count % 8) % 8)
        return (bytes, 8 + Int64(bytes.count) + offset)
    }

    static func layout(_ fileOrder: [(String, Int64)]) throws -> SafetensorsLayout {
        let (bytes, size) = header(fileOrder)
        return try #require(SafetensorsLayout(header: bytes, fileSize: size))
    }

    @Test func theLayoutKeepsNameOrderAndFileOrder() throws {
        // Laid out by dtype, then name (as the reference writer does): b and d first, then a, c.
        let layout = try Self.layout([("b", 400), ("d", 800), ("a", 100), ("c", 200)])
        #expect(layout.tensors.map(\.name) == ["a", "b", "c", "d"])
        #expect(layout.fileOrder.map { layout.tensors[$0].name } == ["b", "d", "a", "c"])
        let b = layout.tensors[1].range
        #expect(b.lowerBound == layout.dataStart && b.count == 400)
        #expect(layout.tensor(at: layout.dataStart) == 1)
        #expect(layout.tensor(at: layout.dataStart + 399) == 1)
        #expect(layout.tensor(at: layout.dataStart + 400) == 3)
        #expect(layout.tensor(at: layout.dataStart + 1499) == 2)
        #expect(layout.tensor(at: layout.dataStart - 1) == nil, "the header holds no tensor")
        #expect(layout.namePrefix == [0, 100, 500, 700, 1500])
        #expect(SafetensorsLayout.headerLength(prefix: [16, 0, 0, 0, 0, 0, 0, 0], fileSize: 100) == 16)
    }

    /// A file written by the reference implementation (safetensors' own save_file, mixed
    /// dtypes): the same tensors, ranges and name order as Python reads from it.
    @Test func aFileOfTheReferenceWriterParsesAsPythonReadsIt() throws {
        let dir = try Scratch("wan-stlayout")
        let path = dir.path + "/m.safetensors"
        let written = try Python.run("""
            import json, struct, sys
            import numpy as np
            from safetensors.numpy import save_file
            from safetensors import safe_open
            save_file({"b.weight": np.ones((300, 7), np.float32), "a.bias": np.ones(5, np.float16),
                       "c.scale": np.ones(3, np.int64), "a.weight": np.ones((64, 64), np.float16)}, sys.argv[1])
            raw = open(sys.argv[1], "rb").read()
            n = struct.unpack("<Q", raw[:8])[0]
            header = json.loads(raw[8:8 + n])
            with safe_open(sys.argv[1], "np") as f:
                keys = list(f.keys())
            print(json.dumps({"keys": keys, "start": 8 + n,
                              "ranges": {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}}))
            """, [path])
        #expect(written.status == 0, "\(written.output)")
        let reference = try #require(written.json as? [String: Any], "\(written.output)")
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let length = try #require(SafetensorsLayout.headerLength(prefix: Array(bytes.prefix(8)), fileSize: Int64(bytes.count)))
        let layout = try #require(SafetensorsLayout(header: Array(bytes[8..<(8 + Int(length))]), fileSize: Int64(bytes.count)))
        #expect(layout.tensors.map(\.name) == reference["keys"] as? [String], "name order is safe_open's keys() order")
        #expect(layout.dataStart == Int64(reference["start"] as? Int ?? -1))
        let ranges = try #require(reference["ranges"] as? [String: [Int]])
        for tensor in layout.tensors {
            let offsets = try #require(ranges[tensor.name])
            #expect(tensor.range == (layout.dataStart + Int64(offsets[0]))..<(layout.dataStart + Int64(offsets[1])), "\(tensor.name)")
        }
    }

    @Test func theTypicalTensorSizeIsAMedianByBytes() throws {
        // A block of a real model: four big weights and many small norms.
        var tensors: [(String, Int64)] = (0..<4).map { ("w\($0)", Int64(50 << 20)) }
        tensors += (0..<40).map { ("norm\($0)", Int64(10 << 10)) }
        #expect(try Self.layout(tensors).typicalTensorSize == 50 << 20)
        #expect(try Self.mixedModel().typicalTensorSize == 4 << 20)
    }

    @Test func aHostileHeaderGivesNoLayout() {
        let size: Int64 = 10_000
        for json in [
            #"{"a":{"data_offsets":[0,20000]}}"#,                   // past the end of the file
            #"{"a":{"data_offsets":[10,5]}}"#,                      // begins after it ends
            #"{"a":{"data_offsets":[-1,5]}}"#,                      // negative
            #"{"a":{"data_offsets":[0.5,5]}}"#,                     // not whole
            #"{"a":{"data_offsets":[0,1e30]}}"#,                    // beyond any integer
            #"{"a":{"data_offsets":[0,18446744073709551615]}}"#,   // UInt64.max
            #"{"a":{"data_offsets":[true,5]}}"#,                    // not a number
            #"{"a":{"data_offsets":[0]}}"#,                         // one offset
            #"{"a":{"dtype":"F32"}}"#,                              // none
            #"{"a":{"data_offsets":[0,100]},"b":{"data_offsets":[50,150]}}"#,   // overlapping
            #"[1,2,3]"#, #"{"a":"#, "",
        ] {
            #expect(SafetensorsLayout(header: Array(json.utf8), fileSize: size) == nil, "\(json)")
        }
        // Header lengths: zero, larger than the file, past the reference limit, short prefix.
        #expect(SafetensorsLayout.headerLength(prefix: [0, 0, 0, 0, 0, 0, 0, 0], fileSize: size) == nil)
        #expect(SafetensorsLayout.headerLength(prefix: [0xF0, 0x27, 0, 0, 0, 0, 0, 0], fileSize: size) == nil)
        #expect(SafetensorsLayout.headerLength(prefix: [0, 0, 0, 0, 0, 0, 0, 0x80], fileSize: Int64.max) == nil)
        #expect(SafetensorsLayout.headerLength(prefix: [8, 0, 0], fileSize: size) == nil)
        // Overlapping tensors that would overflow the sums: refused, no trap.
        let huge = (0..<64).map { #""t\#($0)":{"data_offsets":[0,1125899906842624]}"# }.joined(separator: ",")
        #expect(SafetensorsLayout(header: Array("{\(huge)}".utf8), fileSize: 1 << 51) == nil)
    }

    /// Reads tensors whole, in `order` (tensor indices), with `readSize` reads as page faults
    /// come; returns every range asked ahead, and the bytes of reads after the first three
    /// tensors (a load is followed from its third tensor) that found nothing asked for them.
    static func load(_ layout: SafetensorsLayout, order: [Int], readSize: Int64 = 256 << 10,
                     maxWindow: Int64 = 256 << 20, step: Int64 = 16 << 20, granule: Int64 = 0) -> (asked: [Range<Int64>], unannounced: Int64) {
        var planner = TensorReadahead(layout: layout, minimumStep: step, granule: granule)
        var asked: [Range<Int64>] = []
        var unannounced: Int64 = 0
        for (position, index) in order.enumerated() {
            let range = layout.tensors[index].range
            var offset = range.lowerBound
            while offset < range.upperBound {
                let length = min(readSize, range.upperBound - offset)
                if position >= 3 && !asked.contains(where: { $0.contains(offset) }) { unannounced += length }
                asked += planner.access(offset: offset, length: length, maxWindow: maxWindow)
                offset += length
            }
        }
        return (asked, unannounced)
    }

    static func mixedModel() throws -> SafetensorsLayout {
        // 64 tensors of 4 MiB laid out by "dtype" (odd ones first), so name order jumps around the file.
        let names = (0..<64).map { String(format: "layer.%02d.weight", $0) }
        let fileOrder = names.enumerated().sorted { ($0.offset % 2 == 0 ? 1 : 0, $0.offset) < ($1.offset % 2 == 0 ? 1 : 0, $1.offset) }
        return try layout(fileOrder.map { ($0.element, Int64(4 << 20)) })
    }

    @Test func aFullLoadInNameOrderIsFetchedAheadOnceEach() throws {
        let layout = try Self.mixedModel()
        let (asked, unannounced) = Self.load(layout, order: Array(layout.tensors.indices))
        #expect(unannounced == 0, "reads that found nothing asked for ahead: \(unannounced) bytes")
        let total = asked.reduce(Int64(0)) { $0 + Int64($1.count) }
        let data = layout.namePrefix.last ?? 0
        #expect(total <= data, "asked \(total) bytes for a \(data)-byte data region: something was asked twice")
        #expect(total >= data - 3 * (2 << 20), "the load's bytes were asked ahead (all but the first 2 MiB of the first three tensors)")
    }

    @Test func aHalfLoadFetchesOnlyTheTensorsItReads() throws {
        let layout = try Self.mixedModel()
        let read = Array(stride(from: 0, to: layout.tensors.count, by: 2))
        let (asked, _) = Self.load(layout, order: read)
        let skipped = Set(layout.tensors.indices).subtracting(read)
        for index in skipped {
            let range = layout.tensors[index].range
            #expect(!asked.contains { $0.overlaps(range) }, "\(layout.tensors[index].name) was never read but was fetched")
        }
        let total = asked.reduce(Int64(0)) { $0 + Int64($1.count) }
        #expect(total <= Int64(read.count) * (4 << 20))
    }

    /// A half load (every other tensor in name order) of tensors larger than the fetch granule:
    /// from its third tensor on, each tensor it reads was asked for before the reader got
    /// there, and no tensor it skips is fetched. The same for every third tensor.
    @Test(arguments: [2, 3])
    func aStridedLoadIsFetchedAheadAndSkipsWhatItSkips(stride: Int) throws {
        let layout = try Self.layout((0..<60).map { (String(format: "layer.%02d.weight", $0), Int64(8 << 20)) })
        let read = Array(Swift.stride(from: 1, to: layout.tensors.count, by: stride))
        let (asked, unannounced) = Self.load(layout, order: read)
        #expect(unannounced == 0, "reads that found nothing asked for ahead: \(unannounced) bytes")
        for index in Set(layout.tensors.indices).subtracting(read) {
            #expect(!asked.contains { $0.overlaps(layout.tensors[index].range) }, "\(layout.tensors[index].name) was fetched, never read")
        }
        let total = asked.reduce(Int64(0)) { $0 + Int64($1.count) }
        #expect(total <= Int64(read.count) * (8 << 20), "something was asked twice")
    }

    /// A half load of a real transformer's layout (Wan2.1's blocks: 4.5 MiB attention and
    /// 26 MiB feed-forward weights with small biases and norms between them, one dtype, so the
    /// file's order is the name order): every other name reads all the weights of one block and
    /// only the small tensors of the next. The weights of the blocks it skips are never asked
    /// for, although in the file each follows the one read before it past a small bias.
    @Test func aHalfLoadOfATransformerSkipsTheWeightsOfTheBlocksItSkips() throws {
        var tensors: [(String, Int64)] = []
        for block in 0..<8 {
            var names: [(String, Int64)] = []
            for attention in ["attn1", "attn2"] {
                names += [("\(attention).norm_k.weight", 3 << 10), ("\(attention).norm_q.weight", 3 << 10)]
                for projection in ["to_q", "to_k", "to_v", "to_out.0"] {
                    names += [("\(attention).\(projection).weight", 4_718_592), ("\(attention).\(projection).bias", 3 << 10)]
                }
            }
            names += [("ffn.net.0.proj.weight", 27_525_120), ("ffn.net.0.proj.bias", 17_920), ("ffn.net.2.weight", 27_525_120),
                      ("ffn.net.2.bias", 3 << 10), ("norm2.weight", 3 << 10), ("norm2.bias", 3 << 10), ("scale_shift_table", 18_432)]
            tensors += names.map { ("blocks.\(block).\($0.0)", $0.1) }
        }
        let layout = try Self.layout(tensors.sorted { $0.0 < $1.0 })
        let read = Array(Swift.stride(from: 0, to: layout.tensors.count, by: 2))
        let (asked, unannounced) = Self.load(layout, order: read, readSize: 992 << 10, granule: 1 << 20)
        for index in Set(layout.tensors.indices).subtracting(read) where layout.tensors[index].size >= 1 << 20 {
            #expect(!asked.contains { $0.overlaps(layout.tensors[index].range) }, "\(layout.tensors[index].name) was fetched, never read")
        }
        // What it reads was asked for ahead: all but the first tensors' and the first 2 MiB of
        // each tensor the stride skipped into (a block whose weights it reads after one of
        // norms and biases).
        let readBytes = read.reduce(Int64(0)) { $0 + layout.tensors[$1].size }
        #expect(unannounced <= readBytes / 10, "\(unannounced) of \(readBytes) bytes read found nothing asked ahead")
    }

    /// Three tensors at one stride by chance, then the reader goes elsewhere: what was asked
    /// ahead stays within the window (it grows with what the run read: here three tensors).
    @Test func aStrideThatEndsCostsAtMostItsWindow() throws {
        let layout = try Self.layout((0..<60).map { (String(format: "layer.%02d.weight", $0), Int64(8 << 20)) })
        let (asked, _) = Self.load(layout, order: [0, 2, 4, 41, 13, 29])
        let wasted = asked.filter { range in ![0, 2, 4, 41, 13, 29].contains { layout.tensors[$0].range.overlaps(range) } }
        let bytes = wasted.reduce(Int64(0)) { $0 + Int64($1.count) }
        #expect(bytes > 0, "the stride was followed")
        #expect(bytes <= 3 * (8 << 20), "asked \(bytes >> 20) MiB ahead for a stride of three 8 MiB tensors")
    }

    /// make_model.py's layout (numeric order in the file, loaders ask in name order: blocks.0,
    /// blocks.1, blocks.10, ...): every other name touches blocks.0 then blocks.1, two
    /// neighbours in the file by chance, which must not start a file-order look-ahead.
    @Test func aHalfLoadThatTouchesNeighboursByChanceFetchesNothingItSkips() throws {
        let layout = try Self.layout((0..<64).map { ("blocks.\($0).attn.weight", Int64(4 << 20)) })
        let read = Array(stride(from: 0, to: layout.tensors.count, by: 2))
        let (asked, unannounced) = Self.load(layout, order: read, readSize: 992 << 10)
        #expect(unannounced == 0, "every other name is a stride: \(unannounced) bytes found nothing asked ahead")
        for index in Set(layout.tensors.indices).subtracting(read) {
            #expect(!asked.contains { $0.overlaps(layout.tensors[index].range) }, "\(layout.tensors[index].name) was fetched, never read")
        }
    }

    /// Tensors as small as the fetch granule (4 MiB tensors in 4 MiB chunks, not aligned):
    /// skipping one saves no fetch, so every other tensor in file order is a stream, fetched ahead.
    @Test func skippingLessThanAGranuleIsStillAStream() throws {
        let layout = try Self.layout((0..<64).map { (String(format: "t%02d", $0), Int64(4 << 20)) })
        let read = Array(stride(from: 0, to: 64, by: 2))
        var planner = TensorReadahead(layout: layout, minimumStep: 16 << 20, granule: 4 << 20)
        var asked: [Range<Int64>] = []
        var unannounced = 0
        for (position, index) in read.enumerated() {
            let range = layout.tensors[index].range
            var offset = range.lowerBound
            while offset < range.upperBound {
                if position >= 3 && !asked.contains(where: { $0.contains(offset) }) { unannounced += 1 }
                asked += planner.access(offset: offset, length: 1 << 20, maxWindow: 256 << 20)
                offset += 1 << 20
            }
        }
        #expect(unannounced == 0, "\(unannounced) reads found nothing asked ahead")
        // With 1 MiB chunks the same reads skip whole chunks: nothing between them is fetched.
        let (fine, _) = Self.load(layout, order: read, readSize: 1 << 20)
        for index in Set(layout.tensors.indices).subtracting(read) {
            #expect(!fine.contains { $0.overlaps(layout.tensors[index].range) })
        }
    }

    /// The kernel's asynchronous readahead interleaves the faults of two neighbouring tensors:
    /// a load stays a load.
    @Test func interleavedFaultsOfNeighbouringTensorsKeepTheLoadFollowed() throws {
        let layout = try Self.mixedModel()
        var planner = TensorReadahead(layout: layout, minimumStep: 16 << 20)
        var asked: [Range<Int64>] = []
        var unannounced = 0
        for index in layout.tensors.indices {
            let range = layout.tensors[index].range
            let half = range.lowerBound + Int64(range.count / 2)
            var reads = [(range.lowerBound, half - range.lowerBound), (half, range.upperBound - half)]
            // The next tensor's first fault arrives before this one's second half.
            if index + 1 < layout.tensors.count { reads.insert((layout.tensors[index + 1].range.lowerBound, 4096), at: 1) }
            for (offset, length) in reads {
                if index >= 3 && !asked.contains(where: { $0.contains(offset) }) { unannounced += 1 }
                asked += planner.access(offset: offset, length: length, maxWindow: 256 << 20)
            }
        }
        #expect(unannounced == 0, "\(unannounced) reads found nothing asked ahead")
    }

    @Test func aReaderInFileOrderGetsTheNextTensorsOfTheFile() throws {
        let layout = try Self.mixedModel()
        let (asked, unannounced) = Self.load(layout, order: layout.fileOrder, readSize: 128 << 10)
        #expect(unannounced == 0)
        #expect(asked.reduce(Int64(0)) { $0 + Int64($1.count) } <= layout.filePrefix.last ?? 0)
    }

    @Test func aSliceOfALargeTensorFetchesAboutWhatItReads() throws {
        // A tensor-parallel rank reads 1/8 of a 1 GiB embedding.
        let layout = try Self.layout([("embed", 1 << 30), ("head", 4 << 20)])
        var planner = TensorReadahead(layout: layout, minimumStep: 16 << 20)
        let start = layout.tensors[0].range.lowerBound + 3 * (128 << 20)
        var asked: Int64 = 0
        var offset = start
        while offset < start + (128 << 20) {
            asked += planner.access(offset: offset, length: 1 << 20, maxWindow: 256 << 20).reduce(0) { $0 + Int64($1.count) }
            offset += 1 << 20
        }
        #expect(asked >= 128 << 20 - (2 << 20), "all but the 2 MiB that show the tensor is read")
        #expect(asked <= 2 * (128 << 20) + (16 << 20), "asked \(asked >> 20) MiB for a 128 MiB slice")
    }

    @Test func noWindowMeansNoReadahead() throws {
        let layout = try Self.mixedModel()
        var planner = TensorReadahead(layout: layout, minimumStep: 16 << 20)
        #expect(planner.access(offset: layout.dataStart, length: 2 << 20, maxWindow: 0).isEmpty, "a read that counts the tensor as read, but no window")
        #expect(planner.access(offset: 0, length: 8, maxWindow: 256 << 20).isEmpty, "the header is the stream tracker's")
    }
}
