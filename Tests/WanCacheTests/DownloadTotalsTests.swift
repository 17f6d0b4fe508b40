import Foundation
import GRDB
import Testing
import WanTestSupport
@testable import WanCache

/// The download totals /metrics reads are kept with each record, not counted from the history.
@Suite struct DownloadTotalsTests {
    /// A fresh state database holding these downloads (model, outcome, seconds).
    func store(_ downloads: [(String, String, Double)]) throws -> (StateStore, Scratch) {
        let dir = try Scratch("wan-totals")
        let store = try StateStore(path: dir.path + "/state.sqlite")
        for (model, outcome, seconds) in downloads {
            try store.recordDownload(.init(model: model, path: "w.bin", sha256: String(repeating: "a", count: 64), source: nil,
                                           bytes: 10, duration: seconds, outcome: outcome))
        }
        return (store, dir)
    }

    @Test func totalsFollowEachRecordAndOutliveTheHistory() throws {
        let (store, dir) = try store([("a@1", "completed", 0.5), ("a@1", "completed", 20), ("a@1", "corrupt", 3), ("b@1", "completed", 1e6)])
        defer { withExtendedLifetime(dir) {} }
        let totals = try store.downloadTotals()
        #expect(totals.rows == [.init(model: "a@1", outcome: "completed", count: 2), .init(model: "a@1", outcome: "corrupt", count: 1),
                                .init(model: "b@1", outcome: "completed", count: 1)])
        var expected = Array(repeating: Int64(0), count: StateStore.downloadDurationBuckets.count + 1)
        expected[0] = 1                                            // 0.5 s ≤ 1 s
        expected[3] = 1                                            // 20 s ≤ 60 s
        expected[StateStore.downloadDurationBuckets.count] = 1     // past 7200 s
        #expect(totals.durationCounts == expected)
        #expect(totals.durationSum == 0.5 + 20 + 1e6)
        // The history may be pruned; the totals stand (nothing reads the history for them).
        try store.database.write { db in try db.execute(sql: "DELETE FROM downloads") }
        #expect(try store.downloadTotals() == totals)
    }

    @Test func theMigrationFillsTheTotalsFromTheHistory() throws {
        let (store, dir) = try store([("a@1", "completed", 2), ("a@1", "failed", 1), ("a@1", "completed", 400)])
        defer { withExtendedLifetime(dir) {} }
        let before = try store.downloadTotals()
        // As a database from before the totals: the tables gone, the history there.
        try store.database.write { db in
            try db.drop(table: "download_totals")
            try db.drop(table: "download_durations")
            try StateStore.createDownloadTotals(db)
        }
        #expect(try store.downloadTotals() == before)
        #expect(before.rows.map(\.count) == [2, 1])
    }
}
