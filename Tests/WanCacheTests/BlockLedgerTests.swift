import Foundation
import Testing
@testable import WanCache

struct TestFailure: Error, Equatable { let name: String }

/// The fetcher's bookkeeping, rule by rule (no I/O, no threads).
@Suite struct BlockLedgerTests {
    func ledger(size: Int64 = 10_000, block: Int64 = 1000, chunked: Bool = false, jobBlocks: Int = 4) -> BlockLedger {
        BlockLedger(size: size, blockSize: block, chunked: chunked, jobBlocks: jobBlocks)
    }

    @Test func geometryCoversTheFileExactlyWithoutOverflow() {
        let l = ledger(size: 10_500)
        #expect(l.blockCount == 11)
        #expect(l.blockRange(10) == 10_000..<10_500)
        #expect(l.blocks(in: 999..<1001) == 0..<2)
        #expect(l.blocks(in: 20_000..<30_000).isEmpty && l.blocks(in: -5..<0).isEmpty)
        let huge = BlockLedger(size: Int64.max, blockSize: Int64.max - 1, chunked: false, jobBlocks: 1)
        #expect(huge.blockCount == 2)
        #expect(huge.blockRange(1) == (Int64.max - 1)..<Int64.max, "no overflow at the top of the range")
        #expect(ledger(size: 0).blockCount == 0 && ledger(size: 0).isComplete)
    }

    @Test func claimsRunsOfAtMostAJobAndNeverTwice() {
        var l = ledger()
        let runs = l.claim(0..<10_000, now: Date(), skippingFailuresSince: nil)
        #expect(runs == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]])
        let again = l.claim(0..<10_000, now: Date(), skippingFailuresSince: nil)
        #expect(again.isEmpty, "in flight: not claimed again")
        l.jobSucceeded([0, 1, 2, 3])
        let isNew = l.landed(0..<4000)
        #expect(isNew)
        l.release([4, 5, 6, 7])
        let runs2 = l.claim(0..<10_000, now: Date(), skippingFailuresSince: nil)
        #expect(runs2 == [[4, 5, 6, 7]], "present ones are skipped, released ones free")
    }

    @Test func aFailureIsReportedToWaitersFromBeforeItAndRetriedByLaterReads() {
        var l = ledger()
        let start = Date()
        _ = l.claim(0..<2000, now: start, skippingFailuresSince: nil)
        let failedAt = start.addingTimeInterval(1)
        l.jobFailed([0, 1], error: TestFailure(name: "reset"), now: failedAt, corruptEverywhere: [], coolDown: 60)
        #expect(l.failure(in: 0..<10, since: start, now: failedAt) as? TestFailure == TestFailure(name: "reset"))
        let runs = l.claim(0..<2000, now: failedAt, skippingFailuresSince: start)
        #expect(runs.isEmpty, "the waiter that saw it fail does not retry forever")
        let later = failedAt.addingTimeInterval(1)
        #expect(l.failure(in: 0..<10, since: later, now: later) == nil, "a read that starts later is not told")
        let runs2 = l.claim(0..<2000, now: later, skippingFailuresSince: later)
        #expect(runs2 == [[0, 1]], "it tries again")
    }

    @Test func aChunkCorruptEverywhereCoolsDownAndItsInnocentNeighboursAreFreed() {
        var l = ledger(chunked: true)
        let now = Date()
        _ = l.claim(0..<4000, now: now, skippingFailuresSince: nil)
        let isNew = l.landed(0..<1000)
        #expect(isNew)
        l.jobFailed([0, 1, 2, 3], error: TestFailure(name: "corrupt"), now: now, corruptEverywhere: [1], coolDown: 30)
        #expect(l.coolingDown(now: now) == [1])
        #expect(l.failure(in: 2000..<3000, since: now.addingTimeInterval(-1), now: now) == nil, "chunks 2, 3 did nothing wrong")
        let soon = now.addingTimeInterval(10)
        #expect(l.failure(in: 1000..<1001, since: soon, now: soon) != nil, "every read of chunk 1 fails during the cool-down")
        let runs = l.claim(0..<4000, now: soon, skippingFailuresSince: soon)
        #expect(runs == [[2, 3]], "chunk 1 is not fetched during it")
        let after = now.addingTimeInterval(31)
        l.release([2, 3])
        let runs2 = l.claim(1000..<2000, now: after, skippingFailuresSince: after)
        #expect(runs2 == [[1]], "after the cool-down it is tried again")
        let isNew2 = l.landed(1000..<2000)
        #expect(isNew2)
        l.jobSucceeded([1])
        #expect(l.coolingDown(now: after).isEmpty && l.failure(in: 0..<4000, since: now, now: after) == nil)
    }

    @Test func chunksLearnedFromAMapAreUncheckedUntilHashedAndRejectedOnesStayOut() {
        var l = ledger(chunked: true)
        let isNew = l.landed(0..<1000)
        #expect(isNew)
        #expect(l.fetchedHere)
        let added = l.learn(RangeSet([0..<2000, 3000..<3500]))
        #expect(added == [1000..<2000], "only whole chunks the map claims, and only new ones")
        #expect(!l.fetchedHere && l.uncheckedBlocks(in: 0..<4000) == [1])
        l.checked(1, good: false)
        #expect(!l.contains(1000..<2000) && l.uncheckedBlocks(in: 0..<4000).isEmpty)
        let relearned = l.learn(RangeSet([1000..<2000]))
        #expect(relearned.isEmpty, "a chunk found bad is not taken from a map again")
        _ = l.claim(1000..<2000, now: Date(), skippingFailuresSince: nil)
        let isNew2 = l.landed(1000..<2000)
        #expect(isNew2)
        let afterFetch = l.learn(RangeSet([1000..<2000]))
        #expect(afterFetch.isEmpty && l.contains(1000..<2000) && l.uncheckedBlocks(in: 1000..<2000).isEmpty, "fetched (and checked) here, it counts again")
    }

    @Test func withoutChunksAnyLandedOrRecordedRangeCounts() {
        var l = ledger()
        let isNew = l.landed(100..<200)
        #expect(isNew)
        let isNew2 = l.landed(150..<160)
        #expect(!isNew2, "nothing new")
        let added = l.learn(RangeSet([0..<300]))
        #expect(added == [0..<100, 200..<300])
        #expect(l.present.contiguousPrefix == 300)
        l.reset()
        #expect(l.bytesPresent == 0 && l.fetchedHere && l.inFlight.isEmpty)
    }
}
