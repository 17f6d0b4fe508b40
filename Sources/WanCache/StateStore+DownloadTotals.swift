import Foundation
import GRDB

/// Download totals per model and outcome, and a histogram of completed downloads' durations,
/// updated in the same transaction as each history record: whoever records a download (the CLI,
/// a mount, the sidecar) keeps them current, and reading them costs one row per model and
/// outcome however long the history is.
extension StateStore {
    /// Upper bounds (seconds) of the duration histogram's buckets; one more bucket, +Inf, follows.
    public static let downloadDurationBuckets: [Double] = [1, 5, 15, 60, 300, 900, 1800, 3600, 7200]

    public struct DownloadTotals: Sendable, Equatable {
        public struct Row: Sendable, Equatable {
            public let model: String
            public let outcome: String
            public let count: Int64
        }
        public var rows: [Row] = []
        /// Completed downloads per bucket of ``StateStore/downloadDurationBuckets`` (not
        /// cumulative), the last one past every bound.
        public var durationCounts: [Int64] = Array(repeating: 0, count: StateStore.downloadDurationBuckets.count + 1)
        /// Seconds, over every completed download.
        public var durationSum: Double = 0

        /// None yet.
        public init() {}
    }

    public func downloadTotals() throws -> DownloadTotals {
        try database.read { db in
            var totals = DownloadTotals()
            for row in try Row.fetchAll(db, sql: "SELECT model, outcome, count FROM download_totals ORDER BY model, outcome") {
                totals.rows.append(.init(model: row["model"], outcome: row["outcome"], count: row["count"]))
            }
            for row in try Row.fetchAll(db, sql: "SELECT bucket, count, duration_sum FROM download_durations") {
                let bucket: Int = row["bucket"]
                guard totals.durationCounts.indices.contains(bucket) else { continue }
                totals.durationCounts[bucket] = row["count"]
                totals.durationSum += row["duration_sum"] as Double
            }
            return totals
        }
    }

    /// The bucket a duration falls in (the first bound at or above it).
    static func durationBucket(_ seconds: Double) -> Int {
        downloadDurationBuckets.firstIndex { seconds <= $0 } ?? downloadDurationBuckets.count
    }

    /// Adds `count` downloads of `model` that ended as `outcome`.
    static func count(_ db: Database, model: String, outcome: String, count: Int64 = 1) throws {
        try db.execute(sql: """
            INSERT INTO download_totals (model, outcome, count) VALUES (?, ?, ?)
            ON CONFLICT(model, outcome) DO UPDATE SET count = count + excluded.count
            """, arguments: [model, outcome, count])
    }

    /// Adds a completed download that took `seconds` to the histogram (a negative or
    /// non-finite duration, which no clock gives, is left out).
    static func countDuration(_ db: Database, seconds: Double) throws {
        guard seconds.isFinite, seconds >= 0 else { return }
        try db.execute(sql: """
            INSERT INTO download_durations (bucket, count, duration_sum) VALUES (?, 1, ?)
            ON CONFLICT(bucket) DO UPDATE SET count = count + 1, duration_sum = duration_sum + excluded.duration_sum
            """, arguments: [durationBucket(seconds), seconds])
    }

    /// The tables, filled from the history already recorded.
    static func createDownloadTotals(_ db: Database) throws {
        try db.create(table: "download_totals") { t in
            t.column("model", .text).notNull()
            t.column("outcome", .text).notNull()
            t.column("count", .integer).notNull()
            t.primaryKey(["model", "outcome"])
        }
        try db.create(table: "download_durations") { t in
            t.primaryKey("bucket", .integer)
            t.column("count", .integer).notNull()
            t.column("duration_sum", .double).notNull()
        }
        for row in try Row.fetchAll(db, sql: "SELECT model, outcome, COUNT(*) AS n FROM downloads GROUP BY model, outcome") {
            try count(db, model: row["model"], outcome: row["outcome"], count: row["n"])
        }
        for row in try Row.fetchAll(db, sql: "SELECT duration FROM downloads WHERE outcome = 'completed'") {
            try countDuration(db, seconds: row["duration"])
        }
    }
}
