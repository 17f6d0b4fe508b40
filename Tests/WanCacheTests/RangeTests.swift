import Foundation
import Testing
import WanSystem
import WanTestSupport
@testable import WanCache

@Suite struct RangeSetTests {
    @Test func mergesOverlappingAndTouchingRanges() {
        var set = RangeSet()
        set.insert(10..<20)
        set.insert(30..<40)
        set.insert(20..<25)          // touches the first
        #expect(set.ranges == [10..<25, 30..<40])
        set.insert(5..<35)           // swallows both
        #expect(set.ranges == [5..<40])
        set.insert(50..<50)          // empty: ignored
        #expect(set.count == 35)
    }

    @Test func answersContainsMissingAndPrefix() {
        let set = RangeSet([0..<10, 20..<30, 40..<50])
        #expect(set.contains(0..<10) && set.contains(22..<28) && set.contains(5..<5))
        #expect(!set.contains(5..<15) && !set.contains(10..<20) && !set.contains(45..<51))
        #expect(set.missing(in: 0..<60) == [10..<20, 30..<40, 50..<60])
        #expect(set.missing(in: 25..<45) == [30..<40])
        #expect(set.missing(in: 20..<30) == [])
        #expect(set.contiguousPrefix == 10)
        #expect(RangeSet([5..<9]).contiguousPrefix == 0)
    }

    @Test func randomInsertionsMatchABitmap() {
        var generator = SplitMix64(seed: 7)
        var set = RangeSet()
        var bits = [Bool](repeating: false, count: 2000)
        for _ in 0..<300 {
            let a = Int(generator.next() % 2000), b = Int(generator.next() % 60)
            let range = a..<min(2000, a + b)
            set.insert(Int64(range.lowerBound)..<Int64(range.upperBound))
            for i in range { bits[i] = true }
        }
        #expect(set.count == Int64(bits.filter { $0 }.count))
        for i in 0..<2000 { #expect(set.contains(Int64(i)..<Int64(i + 1)) == bits[i]) }
        for pair in zip(set.ranges, set.ranges.dropFirst()) { #expect(pair.0.upperBound < pair.1.lowerBound) }
    }

    @Test func randomInsertionsAndRemovalsMatchABitmap() {
        var generator = SplitMix64(seed: 11)
        var set = RangeSet()
        var bits = [Bool](repeating: false, count: 2000)
        for step in 0..<600 {
            let a = Int(generator.next() % 2000), b = Int(generator.next() % 80)
            let range = a..<min(2000, a + b)
            let removing = step % 3 == 2
            if removing { set.remove(Int64(range.lowerBound)..<Int64(range.upperBound)) } else { set.insert(Int64(range.lowerBound)..<Int64(range.upperBound)) }
            for i in range { bits[i] = !removing }
        }
        #expect(set.count == Int64(bits.filter { $0 }.count))
        for i in 0..<2000 { #expect(set.contains(Int64(i)..<Int64(i + 1)) == bits[i]) }
        for pair in zip(set.ranges, set.ranges.dropFirst()) { #expect(pair.0.upperBound < pair.1.lowerBound) }
        var split = RangeSet([0..<100])
        split.remove(40..<60)
        #expect(split.ranges == [0..<40, 60..<100], "a removal inside a range splits it")
    }
}

@Suite struct RangeMapLogTests {
    let sha = String(repeating: "ab", count: 32)
    let part = FileIdentity(device: 1, inode: 42)

    func open(_ dir: Scratch, size: Int64 = 1000, sha256: String? = nil, partial: FileIdentity? = nil) throws -> (RangeMapLog, RangeSet) {
        try RangeMapLog.open(in: try Directory.open(dir.path), name: "f.map", size: size, sha256: sha256 ?? sha, partial: partial ?? part)
    }

    func reload(_ dir: Scratch, size: Int64 = 1000, partial: FileIdentity?? = .none) throws -> RangeSet? {
        RangeMapLog.reload(in: try Directory.open(dir.path), name: "f.map", size: size, sha256: sha, partial: partial ?? part)
    }

    @Test func recordsSurviveReopen() throws {
        let dir = try Scratch()
        do {
            let (log, initial) = try open(dir)
            #expect(initial.isEmpty)
            try log.append([0..<100, 200..<300])
            try log.append([100..<200])
        }
        let (_, loaded) = try open(dir)
        #expect(loaded.ranges == [0..<300])
        #expect(try reload(dir)?.ranges == [0..<300])
    }

    @Test func aTornLastRecordIsDropped() throws {
        let dir = try Scratch()
        do {
            let (log, _) = try open(dir)
            try log.append([0..<100, 500..<600])
        }
        // Cut the second record in half, as a crash mid-append would.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: dir.path + "/f.map"))
        try handle.truncate(atOffset: UInt64(RangeMapLog.headerSize) + UInt64(RangeMapLog.recordSize) + 7)
        try handle.close()
        let (log, loaded) = try open(dir)
        #expect(loaded.ranges == [0..<100])
        try log.append([100..<150])
        #expect(try reload(dir)?.ranges == [0..<150])
    }

    @Test func aCorruptedRecordEndsTheLog() throws {
        let dir = try Scratch()
        do {
            let (log, _) = try open(dir)
            try log.append([0..<100, 300..<400])
        }
        let path = dir.path + "/f.map"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[Int(RangeMapLog.headerSize) + RangeMapLog.recordSize + 3] ^= 0x40   // flip a bit in record 2
        try bytes.write(to: URL(fileURLWithPath: path))
        #expect(try reload(dir)?.ranges == [0..<100])
    }

    @Test func aLogForOtherContentIsDiscarded() throws {
        let dir = try Scratch()
        do {
            let (log, _) = try open(dir)
            try log.append([0..<100])
        }
        #expect(try reload(dir, size: 999) == nil)
        let (_, loaded) = try open(dir, sha256: String(repeating: "cd", count: 32))
        #expect(loaded.isEmpty)
    }

    /// A map describes one partial file: once that file was removed or replaced (GC, ensure
    /// --force), its ranges say nothing about the new one at the same name.
    @Test func aLogForAnotherPartialFileClaimsNothing() throws {
        let dir = try Scratch()
        do {
            let (log, _) = try open(dir)
            try log.append([0..<500])
        }
        let other = FileIdentity(device: 1, inode: 43)
        #expect(try reload(dir, partial: other) == nil, "a follower of the new file learns nothing from the old map")
        #expect(try reload(dir, partial: .some(nil))?.ranges == [0..<500], "status, which names no file, still counts it")
        let (_, loaded) = try open(dir, partial: other)
        #expect(loaded.isEmpty, "the owner of the new file starts its map over")
        #expect(try reload(dir, partial: other)?.isEmpty == true)
    }

    /// Maps of the first format (no partial file named) are taken over by the owner, whose
    /// process already checks the file's identity, and rewritten.
    @Test func aLegacyLogIsTakenOverAndRewritten() throws {
        let dir = try Scratch()
        var legacy = Array("WANMAP1\n".utf8) + withUnsafeBytes(of: UInt64(1000).littleEndian, Array.init)
        legacy += Array(RangeMapLog.makeHeader(size: 1000, sha256: sha, partial: nil)[16..<48])
        legacy += RangeMapLog.encode(0..<100)
        try Data(legacy).write(to: URL(fileURLWithPath: dir.path + "/f.map"))
        #expect(try reload(dir) == nil, "a follower does not trust a map that names no file")
        let (_, loaded) = try open(dir)
        #expect(loaded.ranges == [0..<100])
        #expect(try reload(dir)?.ranges == [0..<100], "rewritten in the new format, for this file")
    }

    @Test func aSymlinkAtTheMapsNameIsReplacedNotFollowed() throws {
        let dir = try Scratch()
        let outside = try dir.write("outside.txt", "keep me")
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/f.map", withDestinationPath: outside)
        let (log, _) = try open(dir)
        try log.append([0..<10])
        #expect(try String(contentsOfFile: outside, encoding: .utf8) == "keep me")
        #expect(try FileSystem.info(dir.path + "/f.map", followSymlinks: false)?.kind == .regular)
    }

    @Test func compactionKeepsTheRanges() throws {
        let dir = try Scratch()
        let (log, _) = try open(dir, size: 100_000)
        var set = RangeSet()
        for i in 0..<400 {
            let range = Int64(i * 100)..<Int64(i * 100 + 50)
            try log.append([range])
            set.insert(range)
        }
        try log.compactIfLarge(set)
        let size = try FileManager.default.attributesOfItem(atPath: dir.path + "/f.map")[.size] as! Int
        #expect(size == Int(RangeMapLog.headerSize) + 400 * RangeMapLog.recordSize)
        try log.append([50..<100])
        set.insert(50..<100)
        #expect(try reload(dir, size: 100_000) == set)
    }
}
