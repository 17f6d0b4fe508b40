import Foundation
import Testing
@testable import WanSources

@Suite struct SourceRatesTests {
    /// Feeds `source` completed reads at `rate` bytes per second (as `end` measures them).
    static func measure(_ rates: SourceRates, _ source: String, bytesPerSecond: Double) {
        for _ in 0..<4 {
            let attempt = rates.begin(source, bytes: 1 << 20, parent: .none, canHedge: false)
            Thread.sleep(forTimeInterval: Double(1 << 20) / bytesPerSecond)
            rates.end(attempt, delivered: true)
        }
    }

    @Test func readsAreSharedInProportionToMeasuredRatesOneAtATime() {
        let rates = SourceRates()
        Self.measure(rates, "fast", bytesPerSecond: 200e6)
        Self.measure(rates, "slow", bytesPerSecond: 50e6)
        var given = ["fast": 0, "slow": 0]
        for _ in 0..<500 {
            let order = rates.ranked(["slow", "fast"], bytes: 16 << 20)
            given[["slow", "fast"][order[0]], default: 0] += 1
        }
        let share = Double(given["fast"]!) / 500
        // About 4:1 (timing makes the measured rates inexact on a busy machine).
        #expect(share > 0.6 && share < 0.95, "the fast source got \(given)")
    }

    @Test func equalSourcesAlternateAndTiesKeepThePriorityOrder() {
        let rates = SourceRates()
        let first = rates.ranked(["a", "b"], bytes: 1 << 20)
        #expect(first == [0, 1])
        let picks = (0..<10).map { _ in rates.ranked(["a", "b"], bytes: 1 << 20)[0] }
        #expect(picks.filter { $0 == 0 }.count == 5, "\(picks)")
    }

    @Test func anIdleSourceGetsBoundedCatchUpCredit() {
        let rates = SourceRates()
        // "b" is seen once, then "a" alone takes many reads (b was cooling down, say).
        _ = rates.ranked(["a", "b"], bytes: 1 << 20)
        for _ in 0..<1000 { _ = rates.ranked(["a"], bytes: 16 << 20) }
        // Back together: b catches up for at most `credit` seconds' worth of reads, then they share.
        let picks = (0..<40).map { _ in rates.ranked(["a", "b"], bytes: 16 << 20)[0] }
        let leadingB = picks.prefix { $0 == 1 }.count
        let perRead = Double(16 << 20) / SourceRates.assumedRate
        #expect(leadingB <= Int(SourceRates.credit / perRead) + 1, "b took \(leadingB) reads in a row: \(picks)")
        #expect(picks.suffix(20).contains(0) && picks.suffix(20).contains(1), "\(picks)")
    }

    @Test func aStuckReadIsCancelledAsAHedgeOnlyWhenAnotherSourceCouldTakeOver() throws {
        let rates = SourceRates(hedgeFactor: 3, minimumHedge: 0.2)
        let parent = CancellationToken()
        let hedgeable = rates.begin("stuck", bytes: 1 << 20, parent: parent, canHedge: true)
        let alone = rates.begin("stuck", bytes: 1 << 20, parent: parent, canHedge: false)
        let deadline = Date().addingTimeInterval(5)
        while !hedgeable.token.isCancelled && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        #expect(hedgeable.token.isCancelled && hedgeable.hedged)
        #expect(!alone.token.isCancelled && !alone.hedged)
        #expect(!parent.isCancelled)
        // Never measured, now hedged: it gets a rate, at most half of finishing at once.
        #expect(rates.rate("stuck") == nil)
        rates.end(hedgeable, delivered: false)
        let after = try #require(rates.rate("stuck"))
        #expect(after > 0 && after <= Double(1 << 20) / 0.2 / 2, "\(after)")
        rates.end(alone, delivered: false)
        #expect(rates.rate("stuck") == after, "a transfer that ended without a hedge and without its bytes is no sample")
        // The caller's cancel reaches every attempt; it is no hedge.
        let third = rates.begin("other", bytes: 1 << 20, parent: parent, canHedge: false)
        parent.cancel()
        #expect(third.token.isCancelled && !third.hedged)
    }
}
