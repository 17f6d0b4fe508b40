import Foundation
import Synchronization
import Testing
import WanCore
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

/// Striped reads through ``FailoverReader`` over scripted backends (the layer under test is
/// the reader's choice of sources; the backends only wait, deliver or fail).
@Suite struct HedgedReadTests {
    /// Waits `delay` seconds (ending early, `.cancelled`, when its token is cancelled), then
    /// writes the range; or fails at once with a network error.
    final class ScriptedBackend: StorageBackend {
        let source: SourceURL
        var displayName: String { source.raw }
        var usesCredentials: Bool { false }
        let delay: Double
        let fails: Bool
        let calls = Atomic<Int>(0)

        init(_ url: String, delay: Double = 0, fails: Bool = false) throws {
            source = try SourceURL(parsing: url)
            self.delay = delay
            self.fails = fails
        }

        func stat(_ path: String, cancel: CancellationToken) throws(SourceError) -> RemoteFile {
            throw SourceError(.unsupported, source: displayName, message: "not used")
        }

        func read(_ path: String, range: Range<Int64>, fileSize: Int64?, into sink: any ByteSink,
                  cancel: CancellationToken) throws(SourceError) {
            calls.add(1, ordering: .relaxed)
            if fails { throw SourceError(.network, source: displayName, message: "down") }
            let deadline = Date().addingTimeInterval(delay)
            while Date() < deadline {
                if cancel.isCancelled { throw SourceError(.cancelled, source: displayName, message: "cancelled") }
                Thread.sleep(forTimeInterval: 0.01)
            }
            let bytes = [UInt8](repeating: 7, count: range.count)
            do {
                try bytes.withUnsafeBytes { try sink.write($0, at: range.lowerBound) }
            } catch {
                throw SourceError(.localIO, source: displayName, message: "\(error)")
            }
        }

        func list(prefix: String, cancel: CancellationToken) throws(SourceError) -> [RemoteFile] { [] }
    }

    /// Counts what arrived; resumes where it stopped.
    final class CountingSink: ResumableSink {
        let written = Mutex<Int64>(0)
        let start: Int64
        init(start: Int64) { self.start = start }
        var resumePosition: Int64 { start + written.withLock { $0 } }
        func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws { written.withLock { $0 += Int64(bytes.count) } }
    }

    static let file = FileSpec(path: "w.bin", size: 1 << 20, sha256: String(repeating: "a", count: 64),
                               chunkSize: 1 << 20, chunks: [String(repeating: "b", count: 64)])

    @Test func aHedgedSourceIsAskedAgainBeforeTheReadFails() throws {
        let slow = try ScriptedBackend("http://slow.example/m", delay: 1)
        let failing = try ScriptedBackend("http://failing.example/m", fails: true)
        let reader = FailoverReader(backends: [slow, failing], health: SourceHealth(),
                                    rates: SourceRates(hedgeFactor: 3, minimumHedge: 0.2), striping: true)
        let sink = CountingSink(start: 0)
        let used = try reader.read(Self.file, range: 0..<Self.file.size, into: sink)
        #expect(used.displayName == slow.displayName)
        #expect(slow.calls.load(ordering: .relaxed) == 2 && failing.calls.load(ordering: .relaxed) == 1)
        #expect(sink.resumePosition == Self.file.size)
    }

    /// What the readahead window is sized by: the rates of the sources a read would use.
    @Test func theMeasuredRateIsThatOfTheSourcesAReadWouldUse() throws {
        let a = try ScriptedBackend("http://a.example/m"), b = try ScriptedBackend("http://b.example/m")
        let rates = SourceRates(), health = SourceHealth()
        let reader = FailoverReader(backends: [a, b], health: health, rates: rates, striping: true)
        #expect(reader.measuredRate(striped: true) == nil)
        SourceRatesTests.measure(rates, a.displayName, bytesPerSecond: 40e6)
        #expect(reader.measuredRate(striped: true) == nil, "b is not measured yet")
        let first = try #require(reader.measuredRate(striped: false), "not striped: the first source")
        #expect(first > 5e6 && first <= 45e6, "\(first)")
        SourceRatesTests.measure(rates, b.displayName, bytesPerSecond: 10e6)
        let both = try #require(reader.measuredRate(striped: true))
        let second = try #require(rates.rate(b.displayName))
        #expect(second < first && abs(both - (first + second) / 2) < 1, "striped: the mean of both sources' rates (\(both): \(first), \(second))")
        health.recordFailure(b.displayName, error: SourceError(.network, source: b.displayName, message: "down"))
        #expect(reader.measuredRate(striped: true) == rates.rate(a.displayName), "a source cooling down is not used")
    }

    @Test func aWorkingSourceIsNotLeftForOneCoolingDown() throws {
        let slow = try ScriptedBackend("http://slow.example/m", delay: 1)
        let cooling = try ScriptedBackend("http://cooling.example/m")
        let health = SourceHealth()
        health.recordFailure(cooling.displayName, error: SourceError(.network, source: cooling.displayName, message: "down"))
        let reader = FailoverReader(backends: [slow, cooling], health: health,
                                    rates: SourceRates(hedgeFactor: 3, minimumHedge: 0.2), striping: true)
        let used = try reader.read(Self.file, range: 0..<Self.file.size, into: CountingSink(start: 0))
        #expect(used.displayName == slow.displayName)
        #expect(slow.calls.load(ordering: .relaxed) == 1 && cooling.calls.load(ordering: .relaxed) == 0)
    }
}
