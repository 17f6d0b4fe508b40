import Foundation
import Testing
import WanCore
@testable import WanCache

@Suite struct AccessTraceTests {
    static let a = FileSpec(path: "a.safetensors", size: 100 << 20, sha256: String(repeating: "a", count: 64))
    static let b = FileSpec(path: "b.safetensors", size: 50 << 20, sha256: String(repeating: "b", count: 64))
    static let spec = ModelSpec(modelID: "m@1", version: "1", files: [a, b], sources: [])

    static func trace(_ touches: [(FileSpec, Range<Int64>, Double)]) -> AccessTrace {
        var trace = AccessTrace(model: "m@1", variant: nil)
        var covered: [Int: RangeSet] = [:]
        for (file, range, at) in touches { trace.touch(.init(file), range, at: at, covered: &covered) }
        return trace
    }

    @Test func aReadAddsOnlyWhatWasNotReadBeforeAndContinuesTheLastRange() {
        let trace = Self.trace([
            (Self.a, 0..<1000, 0), (Self.a, 1000..<2000, 0.1),     // continues: one range
            (Self.b, 0..<10, 0.2),
            (Self.a, 500..<3000, 0.3),                              // only 2000..<3000 is new, and does not continue b's
            (Self.a, 0..<3000, 0.4),                                // nothing new
        ])
        #expect(trace.ranges.map { [$0.file, Int($0.offset), Int($0.length)] } == [[0, 0, 2000], [1, 0, 10], [0, 2000, 1000]])
        #expect(trace.ranges.map(\.at) == [0, 0.2, 0.3])
        #expect(trace.byteCount == 3010)
    }

    @Test func mergingKeepsEachByteAtItsEarliestTouchInEitherTrace() {
        let first = Self.trace([(Self.a, 0..<100, 0), (Self.a, 1000..<1100, 1.0)])
        let second = Self.trace([(Self.b, 0..<50, 0.5), (Self.a, 1050..<1200, 0.7), (Self.a, 0..<100, 2)])
        var one = first
        one.runs = 1
        var two = second
        two.runs = 2
        let merged = one.merged(with: two)
        #expect(merged.runs == 3)
        let ranges = merged.ranges.map { (merged.files[$0.file].path, $0.offset, $0.offset + $0.length, $0.at) }
        #expect(ranges.map(\.0) == ["a.safetensors", "b.safetensors", "a.safetensors", "a.safetensors"])
        #expect(ranges.map(\.1) == [0, 0, 1050, 1000])
        #expect(ranges.map(\.2) == [100, 50, 1200, 1050])
        #expect(ranges.map(\.3) == [0, 0.5, 0.7, 1.0])
        #expect(merged.byteCount == 100 + 50 + 200)
    }

    @Test func aTraceRoundTripsThroughJSONAndResolvesInItsOrder() throws {
        var trace = Self.trace([(Self.b, 4096..<8192, 0), (Self.a, 0..<10, 0.5)])
        trace.runs = 1
        let read = try AccessTrace.decode(try trace.encoded(), source: "t.json")
        #expect(read == trace)
        let resolved = try read.resolve(against: Self.spec)
        #expect(resolved.ranges.map(\.0.path) == ["b.safetensors", "a.safetensors"])
        #expect(resolved.ranges.map(\.1) == [4096..<8192, 0..<10])
        #expect(resolved.skipped.isEmpty)
    }

    @Test func aFileWhoseContentChangedIsSkippedNotFetched() throws {
        let changed = FileSpec(path: "a.safetensors", size: 100 << 20, sha256: String(repeating: "c", count: 64))
        let trace = Self.trace([(changed, 0..<10, 0), (Self.b, 0..<10, 0.1)])
        let resolved = try trace.resolve(against: Self.spec)
        #expect(resolved.ranges.map(\.0.path) == ["b.safetensors"])
        #expect(resolved.skipped == ["a.safetensors"])
        #expect(trace.restricted(to: Self.spec).files.map(\.path) == ["b.safetensors"])
    }

    /// A trace file is hostile input: each of these is refused with a message naming what is
    /// wrong, and none traps.
    @Test func hostileTracesAreRefusedByName() throws {
        let file = #"{"path":"a.safetensors","sha256":"\#(String(repeating: "a", count: 64))","size":104857600}"#
        func json(version: Int = 1, model: String = "m@1", files: String = "[\(file)]", ranges: String) -> Data {
            Data(#"{"version":\#(version),"model":"\#(model)","files":\#(files),"ranges":\#(ranges),"runs":1}"#.utf8)
        }
        let cases: [(Data, String)] = [
            (json(ranges: #"[{"file":0,"offset":104857000,"length":1000,"at":0}]"#), "is not inside"),
            (json(ranges: #"[{"file":0,"offset":9223372036854775000,"length":9223372036854775000,"at":0}]"#), "is not inside"),
            (json(ranges: #"[{"file":0,"offset":-5,"length":10,"at":0}]"#), "is not inside"),
            (json(ranges: #"[{"file":0,"offset":5,"length":0,"at":0}]"#), "is not inside"),
            (json(ranges: #"[{"file":3,"offset":0,"length":10,"at":0}]"#), "names file 3"),
            (json(ranges: #"[{"file":0,"offset":0,"length":10,"at":0},{"file":0,"offset":5,"length":10,"at":1}]"#), "overlaps"),
            (json(ranges: #"[{"file":0,"offset":0,"length":10,"at":-1}]"#), "has the time"),
            (json(version: 9, ranges: "[]"), "version 9"),
            (json(model: "other@1", ranges: "[]"), "not of m@1"),
            (json(files: "[\(file),\(file)]", ranges: "[]"), "twice"),
        ]
        for (data, expected) in cases {
            let trace = try AccessTrace.decode(data, source: "t.json")
            #expect(throws: OrchestratorError.self) { try trace.resolve(against: Self.spec) }
            do {
                _ = try trace.resolve(against: Self.spec)
            } catch {
                #expect(error.description.contains(expected), "\(error.description) should say '\(expected)'")
            }
        }
        #expect(throws: OrchestratorError.self) { try AccessTrace.decode(Data("[1,2]".utf8), source: "t.json") }
        #expect(throws: OrchestratorError.self) { try AccessTrace.decode(Data(count: AccessTrace.maxFileBytes + 1), source: "t.json") }
    }

    @Test func aReplayFetchesOnlyWhatIsMissingInPiecesUpToItsBudget() throws {
        let trace = Self.trace([(Self.a, 0..<(10 << 20), 0), (Self.b, 0..<(4 << 20), 1), (Self.a, (20 << 20)..<(30 << 20), 2)])
        let resolved = try trace.resolve(against: Self.spec).ranges
        // a's first 4 MiB are cached already.
        let present: (FileSpec) -> RangeSet = { $0 == Self.a ? RangeSet([0..<(4 << 20)]) : RangeSet() }
        var options = TraceReplay.Options()
        options.piece = 4 << 20
        var outcome = TraceReplay.Outcome()
        let pieces = TraceReplay.plan(resolved, present: present, options: options, outcome: &outcome)
        #expect(pieces.map(\.file.path) == ["a.safetensors", "a.safetensors", "b.safetensors", "a.safetensors", "a.safetensors", "a.safetensors"])
        let mib: Int64 = 1 << 20
        let starts: [Int64] = [4 * mib, 8 * mib, 0, 20 * mib, 24 * mib, 28 * mib]
        #expect(pieces.map(\.range.lowerBound) == starts)
        #expect(outcome.bytesAlreadyPresent == 4 << 20 && outcome.bytesRequested == 20 << 20 && !outcome.budgetReached)

        options.budget = 7 << 20
        var capped = TraceReplay.Outcome()
        let first = TraceReplay.plan(resolved, present: present, options: options, outcome: &capped)
        let cappedRanges: [Range<Int64>] = [(4 * mib)..<(8 * mib), (8 * mib)..<(10 * mib), 0..<mib]
        #expect(first.map(\.range) == cappedRanges)
        #expect(capped.bytesRequested == 7 << 20 && capped.budgetReached)
    }
}
