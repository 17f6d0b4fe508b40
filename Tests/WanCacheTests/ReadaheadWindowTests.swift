import Testing
@testable import WanCache

/// The readahead window a reader gets from its file's measured source rate.
@Suite struct ReadaheadWindowTests {
    @Test func theWindowHoldsTwoSecondsOfTheMeasuredRateWithinItsBounds() {
        let cap: Int64 = 256 << 20
        #expect(FileFetcher.readaheadWindow(rate: nil, connections: 8, cap: cap) == cap, "not measured yet: the cap")
        #expect(FileFetcher.readaheadWindow(rate: 5e6, connections: 8, cap: cap) == 80_000_000, "5 MB/s × 8 requests × 2 s")
        #expect(FileFetcher.readaheadWindow(rate: 1e6, connections: 8, cap: cap) == 32 << 20, "at least two requests' worth")
        #expect(FileFetcher.readaheadWindow(rate: 500e6, connections: 8, cap: cap) == cap, "a fast source keeps the cap")
        #expect(FileFetcher.readaheadWindow(rate: 5e6, connections: 8, cap: 16 << 20) == 16 << 20, "never past prefetch=")
        #expect(FileFetcher.readaheadWindow(rate: 5e6, connections: 8, cap: 0) == 0, "prefetch=off")
        for hostile in [Double.infinity, .nan, -1, 0, 1e300] {
            let window = FileFetcher.readaheadWindow(rate: hostile, connections: 64, cap: 1 << 36)
            #expect(window == 1 << 36, "rate \(hostile)")
        }
    }
}
