import Foundation
import GRDB
import WanCore

/// The cache's bookkeeping in `MODELS_ROOT/.state/state.sqlite` (SQLite in WAL mode, via
/// GRDB): pins, access times and use counts, download history, verification results, and
/// files found corrupt. Shared by the CLI, the mount and the sidecar; SQLite does the
/// cross-process locking. Schema changes go through numbered migrations.
public final class StateStore: Sendable {
    public let path: String
    let database: DatabasePool

    /// A model variant's usage (keyed by its directory name: `id` or `id#variant`).
    public struct ModelUsage: Sendable, Equatable, Codable {
        public var model: String
        public var pinned: Bool
        public var lastAccess: Date?
        public var useCount: Int64
        public var opens: Int64
        public var bytesRead: Int64
    }

    public struct DownloadRecord: Sendable, Equatable, Codable {
        public var model: String
        public var path: String
        public var sha256: String
        public var source: String?
        public var bytes: Int64
        public var duration: Double
        /// "completed", "failed", "corrupt", "cancelled".
        public var outcome: String
        public var error: String?
        public var finishedAt: Date

        public init(model: String, path: String, sha256: String, source: String?, bytes: Int64, duration: Double,
                    outcome: String, error: String? = nil, finishedAt: Date = Date()) {
            self.model = model
            self.path = path
            self.sha256 = sha256
            self.source = source
            self.bytes = bytes
            self.duration = duration
            self.outcome = outcome
            self.error = error
            self.finishedAt = finishedAt
        }
    }

    public struct Verification: Sendable, Equatable, Codable {
        public var model: String
        public var path: String
        public var sha256: String
        public var ok: Bool
        public var error: String?
        public var verifiedAt: Date
    }

    public init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: PathSplit.parent(path), withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        database = try DatabasePool(path: path, configuration: configuration)
        try StateStore.migrator.migrate(database)
    }

    public convenience init(resolver: ModelResolver) throws {
        try self.init(path: resolver.statePath)
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "model_usage") { t in
                t.primaryKey("model", .text)
                t.column("pinned", .boolean).notNull().defaults(to: false)
                t.column("pinned_at", .double)
                t.column("last_access", .double)
                t.column("use_count", .integer).notNull().defaults(to: 0)
                t.column("opens", .integer).notNull().defaults(to: 0)
                t.column("bytes_read", .integer).notNull().defaults(to: 0)
            }
            try db.create(table: "downloads") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("model", .text).notNull().indexed()
                t.column("path", .text).notNull()
                t.column("sha256", .text).notNull()
                t.column("source", .text)
                t.column("bytes", .integer).notNull()
                t.column("duration", .double).notNull()
                t.column("outcome", .text).notNull()
                t.column("error", .text)
                t.column("finished_at", .double).notNull()
            }
            try db.create(table: "verifications") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("model", .text).notNull().indexed()
                t.column("path", .text).notNull()
                t.column("sha256", .text).notNull()
                t.column("ok", .boolean).notNull()
                t.column("error", .text)
                t.column("verified_at", .double).notNull()
            }
            try db.create(table: "file_states") { t in
                t.primaryKey("sha256", .text)
                t.column("state", .text).notNull()
                t.column("detail", .text)
                t.column("updated_at", .double).notNull()
            }
        }
        // v2: timestamped uses (the sidecar's analytics: per day, per hour) and the settings
        // the sidecar's `PUT /config/update` persists above the config file.
        migrator.registerMigration("v2") { db in
            try db.create(table: "usage_events") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("model", .text).notNull().indexed()
                t.column("at", .double).notNull().indexed()
                t.column("uses", .integer).notNull()
            }
            try db.create(table: "settings") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
        }
        // v3: a CORRUPT mark names the size it was found with: one manifest's wrong entry for
        // a sha256 must not mark another manifest's right one.
        migrator.registerMigration("v3") { db in
            try db.alter(table: "file_states") { t in t.add(column: "size", .integer) }
        }
        // v4: download totals kept up to date with each record, so /metrics never scans the
        // history; filled from the history there is.
        migrator.registerMigration("v4") { db in try createDownloadTotals(db) }
        return migrator
    }

    // MARK: - Usage and pins

    /// Counts a use of a model: `uses` (ensure, load), `opens` (files opened through the mount), bytes read.
    public func recordAccess(model: String, uses: Int64 = 1, opens: Int64 = 0, bytesRead: Int64 = 0, at date: Date = Date()) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO model_usage (model, last_access, use_count, opens, bytes_read) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(model) DO UPDATE SET last_access = MAX(COALESCE(last_access, 0), excluded.last_access),
                  use_count = use_count + excluded.use_count, opens = opens + excluded.opens,
                  bytes_read = bytes_read + excluded.bytes_read
                """, arguments: [model, date.timeIntervalSince1970, uses, opens, bytesRead])
            if uses > 0 {
                try db.execute(sql: "INSERT INTO usage_events (model, at, uses) VALUES (?, ?, ?)",
                               arguments: [model, date.timeIntervalSince1970, uses])
            }
        }
    }

    /// A use (or a batch of uses) of a model at a time.
    public struct UseEvent: Sendable, Equatable {
        public let model: String
        public let at: Date
        public let uses: Int64
    }

    /// The uses recorded in `range`, oldest first.
    public func useEvents(in range: ClosedRange<Date>) throws -> [UseEvent] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT model, at, uses FROM usage_events WHERE at >= ? AND at <= ? ORDER BY at",
                             arguments: [range.lowerBound.timeIntervalSince1970, range.upperBound.timeIntervalSince1970])
                .map { UseEvent(model: $0["model"], at: Date(timeIntervalSince1970: $0["at"]), uses: $0["uses"]) }
        }
    }

    // MARK: - Settings

    /// Settings persisted by the sidecar (dotted keys, JSON values).
    public func settings() throws -> [String: String] {
        try database.read { db in
            Dictionary(try Row.fetchAll(db, sql: "SELECT key, value FROM settings").map { ($0["key"], $0["value"]) },
                       uniquingKeysWith: { a, _ in a })
        }
    }

    public func setSettings(_ values: [String: String]) throws {
        try database.write { db in
            for (key, value) in values {
                try db.execute(sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                               arguments: [key, value])
            }
        }
    }

    /// Sets a model's last access time exactly (imports, tests, the sidecar's analytics resets).
    public func setLastAccess(_ date: Date, model: String) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO model_usage (model, last_access) VALUES (?, ?)
                ON CONFLICT(model) DO UPDATE SET last_access = excluded.last_access
                """, arguments: [model, date.timeIntervalSince1970])
        }
    }

    public func setPinned(_ pinned: Bool, model: String) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO model_usage (model, pinned, pinned_at) VALUES (?, ?, ?)
                ON CONFLICT(model) DO UPDATE SET pinned = excluded.pinned, pinned_at = excluded.pinned_at
                """, arguments: [model, pinned, pinned ? Date().timeIntervalSince1970 : nil])
        }
    }

    public func usage(model: String) throws -> ModelUsage? {
        try database.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM model_usage WHERE model = ?", arguments: [model]).map(Self.usage)
        }
    }

    public func allUsage() throws -> [ModelUsage] {
        try database.read { db in try Row.fetchAll(db, sql: "SELECT * FROM model_usage ORDER BY model").map(Self.usage) }
    }

    public func forget(model: String) throws {
        try database.write { db in try db.execute(sql: "UPDATE model_usage SET use_count = 0, opens = 0, bytes_read = 0 WHERE model = ?", arguments: [model]) }
    }

    private static func usage(_ row: Row) -> ModelUsage {
        ModelUsage(model: row["model"], pinned: row["pinned"], lastAccess: (row["last_access"] as Double?).map(Date.init(timeIntervalSince1970:)),
                   useCount: row["use_count"], opens: row["opens"], bytesRead: row["bytes_read"])
    }

    // MARK: - Downloads

    public func recordDownload(_ record: DownloadRecord) throws {
        try database.write { db in
            try db.execute(sql: """
                INSERT INTO downloads (model, path, sha256, source, bytes, duration, outcome, error, finished_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [record.model, record.path, record.sha256, record.source, record.bytes, record.duration,
                                 record.outcome, record.error, record.finishedAt.timeIntervalSince1970])
            try Self.count(db, model: record.model, outcome: record.outcome)
            if record.outcome == "completed" { try Self.countDuration(db, seconds: record.duration) }
        }
    }

    public func downloads(model: String? = nil, limit: Int = 1000) throws -> [DownloadRecord] {
        try database.read { db in
            let rows = try model.map {
                try Row.fetchAll(db, sql: "SELECT * FROM downloads WHERE model = ? ORDER BY id DESC LIMIT ?", arguments: [$0, limit])
            } ?? Row.fetchAll(db, sql: "SELECT * FROM downloads ORDER BY id DESC LIMIT ?", arguments: [limit])
            return rows.map { row in
                DownloadRecord(model: row["model"], path: row["path"], sha256: row["sha256"], source: row["source"],
                               bytes: row["bytes"], duration: row["duration"], outcome: row["outcome"], error: row["error"],
                               finishedAt: Date(timeIntervalSince1970: row["finished_at"]))
            }
        }
    }

    // MARK: - Verification and corrupt files

    public func recordVerification(model: String, path: String, sha256: String, ok: Bool, error: String?, at date: Date = Date()) throws {
        try database.write { db in
            try db.execute(sql: "INSERT INTO verifications (model, path, sha256, ok, error, verified_at) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [model, path, sha256, ok, error, date.timeIntervalSince1970])
        }
    }

    /// When every file of `model` last verified OK, or nil.
    public func lastVerified(model: String) throws -> Date? {
        try database.read { db in
            try Double.fetchOne(db, sql: "SELECT MAX(verified_at) FROM verifications WHERE model = ? AND ok = 1", arguments: [model])
                .map(Date.init(timeIntervalSince1970:))
        }
    }

    public func verifications(model: String? = nil, limit: Int = 1000) throws -> [Verification] {
        try database.read { db in
            let rows = try model.map {
                try Row.fetchAll(db, sql: "SELECT * FROM verifications WHERE model = ? ORDER BY id DESC LIMIT ?", arguments: [$0, limit])
            } ?? Row.fetchAll(db, sql: "SELECT * FROM verifications ORDER BY id DESC LIMIT ?", arguments: [limit])
            return rows.map { row in
                Verification(model: row["model"], path: row["path"], sha256: row["sha256"], ok: row["ok"], error: row["error"],
                             verifiedAt: Date(timeIntervalSince1970: row["verified_at"]))
            }
        }
    }

    /// A content's mark: CORRUPT, why, and the size it was found with (nil: any size).
    public struct FileMark: Sendable, Equatable {
        public let state: ModelState
        public let detail: String?
        public let size: Int64?
    }

    /// Marks content as CORRUPT (or clears the mark with `nil`).
    public func setFileState(_ state: ModelState?, sha256: String, size: Int64? = nil, detail: String? = nil) throws {
        try database.write { db in
            if let state {
                try db.execute(sql: """
                    INSERT INTO file_states (sha256, state, detail, updated_at, size) VALUES (?, ?, ?, ?, ?)
                    ON CONFLICT(sha256) DO UPDATE SET state = excluded.state, detail = excluded.detail,
                        updated_at = excluded.updated_at, size = excluded.size
                    """, arguments: [sha256, state.rawValue, detail, Date().timeIntervalSince1970, size])
            } else {
                try db.execute(sql: "DELETE FROM file_states WHERE sha256 = ?", arguments: [sha256])
            }
        }
    }

    /// Every content's mark, by sha256.
    public func fileMarks() throws -> [String: FileMark] {
        try database.read { db in
            var result: [String: FileMark] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM file_states") {
                if let state = ModelState(rawValue: row["state"]) {
                    result[row["sha256"]] = FileMark(state: state, detail: row["detail"], size: row["size"])
                }
            }
            return result
        }
    }
}
