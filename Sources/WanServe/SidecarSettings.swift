import Foundation
import Synchronization
import WanCache
import WanCore

/// The settings `PUT /api/v1/config/update` can change while the sidecar runs. They start from
/// the configuration, are overlaid by what earlier updates persisted in the state database
/// (so they survive restarts), and apply at once.
final class SidecarSettings: Sendable {
    struct Values: Sendable, Equatable {
        var maxConcurrentDownloads: Int
        var maxRetries: Int
        /// Megabits per second, the default cap of a download started without one; 0 = unlimited.
        var bandwidthLimitMbps: Double
        /// The cache's size limit (`max_total_size`), nil = none.
        var maxStorageGB: Double?
        /// Scheduled GC starts when the cache reaches this share of `max_storage_gb`.
        var cleanupThresholdPercent: Double = 90
        var checkIntervalHours: Double = 24
        var autoRepairEnabled = false
        var healthMonitoring = true
        var garbageCollection: Bool

        init(_ config: OrchestratorConfig) {
            maxConcurrentDownloads = config.maxConcurrentDownloads
            maxRetries = config.retryAttempts
            bandwidthLimitMbps = 0
            maxStorageGB = config.maxTotalSize.map { Double($0) / 1e9 }
            garbageCollection = config.enableGarbageCollection
        }

        var maxStorageBytes: Int64? { maxStorageGB.map { Int64($0 * 1e9) } }
    }

    /// A writable key: its dotted name, how to read it from JSON and where it goes.
    struct Key: Sendable {
        let name: String
        let apply: @Sendable (inout Values, Any) throws -> Void
        let read: @Sendable (Values) -> Any
    }

    /// Whether a JSON value is true or false (JSONSerialization gives both numbers and booleans as NSNumber).
    static func isBoolean(_ value: Any) -> Bool {
        (value as? NSNumber).map { String(cString: $0.objCType) == "c" } ?? false
    }

    static func number(_ value: Any, _ name: String, in range: ClosedRange<Double>) throws -> Double {
        guard let number = value as? NSNumber, !isBoolean(number), range.contains(number.doubleValue) else {
            throw RequestBody.invalid(name, "must be a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number.doubleValue
    }

    static func integer(_ value: Any, _ name: String, in range: ClosedRange<Int>) throws -> Int {
        let number = try number(value, name, in: Double(range.lowerBound)...Double(range.upperBound))
        guard number == number.rounded() else { throw RequestBody.invalid(name, "must be an integer") }
        return Int(number)
    }

    static func flag(_ value: Any, _ name: String) throws -> Bool {
        guard let number = value as? NSNumber, isBoolean(number) else { throw RequestBody.invalid(name, "must be true or false") }
        return number.boolValue
    }

    static let keys: [Key] = [
        Key(name: "downloads.max_concurrent_downloads", apply: { $0.maxConcurrentDownloads = try integer($1, "downloads.max_concurrent_downloads", in: 1...64) },
            read: { $0.maxConcurrentDownloads }),
        Key(name: "downloads.max_retries", apply: { $0.maxRetries = try integer($1, "downloads.max_retries", in: 0...20) }, read: { $0.maxRetries }),
        Key(name: "downloads.bandwidth_limit_mbps", apply: { $0.bandwidthLimitMbps = try number($1, "downloads.bandwidth_limit_mbps", in: 0...1e6) },
            read: { $0.bandwidthLimitMbps }),
        Key(name: "storage.max_storage_gb", apply: { values, value in
            values.maxStorageGB = value is NSNull ? nil : try number(value, "storage.max_storage_gb", in: 0.000001...1e9)
        }, read: { $0.maxStorageGB.map { $0 as Any } ?? NSNull() }),
        Key(name: "storage.cleanup_threshold_percent", apply: { $0.cleanupThresholdPercent = try number($1, "storage.cleanup_threshold_percent", in: 1...100) },
            read: { $0.cleanupThresholdPercent }),
        Key(name: "health_monitoring.check_interval_hours", apply: { $0.checkIntervalHours = try number($1, "health_monitoring.check_interval_hours", in: 0.0001...8760) },
            read: { $0.checkIntervalHours }),
        Key(name: "health_monitoring.auto_repair_enabled", apply: { $0.autoRepairEnabled = try flag($1, "health_monitoring.auto_repair_enabled") },
            read: { $0.autoRepairEnabled }),
        Key(name: "features.health_monitoring", apply: { $0.healthMonitoring = try flag($1, "features.health_monitoring") }, read: { $0.healthMonitoring }),
        Key(name: "features.garbage_collection", apply: { $0.garbageCollection = try flag($1, "features.garbage_collection") }, read: { $0.garbageCollection }),
    ]

    private let values: Mutex<Values>
    private let state: StateStore?

    init(config: OrchestratorConfig, state: StateStore?) {
        var values = Values(config)
        let persisted = (try? state?.settings()) ?? [:]
        for key in Self.keys {
            guard let text = persisted[key.name], let data = text.data(using: .utf8),
                  let value = try? JSONSerialization.jsonObject(with: data, options: .fragmentsAllowed) else { continue }
            try? key.apply(&values, value)
        }
        self.values = Mutex(values)
        self.state = state
    }

    var current: Values { values.withLock { $0 } }

    /// Bytes per second a download started without its own cap gets (0 = unlimited).
    var defaultBandwidth: Int64 { Int64(current.bandwidthLimitMbps * 125_000) }

    /// Applies `updates` (dotted key → JSON value) all or nothing, persists them, and returns
    /// the keys whose value changed.
    func update(_ updates: [String: Any]) throws -> [String] {
        // One lock around read, apply, persist and store: two updates at once both land.
        try values.withLock { values in
            var next = values
            for (name, value) in updates {
                guard let key = Self.keys.first(where: { $0.name == name }) else {
                    throw RequestBody.invalid(name, "cannot be changed (writable: \(Self.keys.map(\.name).joined(separator: ", ")))")
                }
                try key.apply(&next, value)
            }
            let before = values
            let changed = Self.keys.filter { "\($0.read(before))" != "\($0.read(next))" }.map(\.name).sorted()
            var persisted: [String: String] = [:]
            for key in Self.keys where changed.contains(key.name) {
                let data = try JSONSerialization.data(withJSONObject: key.read(next), options: .fragmentsAllowed)
                persisted[key.name] = String(decoding: data, as: UTF8.self)
            }
            try state?.setSettings(persisted)
            values = next
            return changed
        }
    }
}
