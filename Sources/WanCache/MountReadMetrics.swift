import Foundation
import WanCore
import WanSystem

/// What a mount served, published by the mount process every few seconds under
/// `MODELS_ROOT/.state/mounts/<pid>.json` so the sidecar can export it in `/metrics` (they
/// are separate processes; the file is replaced atomically).
public struct MountReadMetrics: Codable, Sendable, Equatable {
    /// Upper bounds (seconds) of the read latency histogram's buckets.
    public static let latencyBuckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    public var pid: Int32
    public var mountpoint: String
    public var updated = Date()
    /// Bytes of reads whose blocks were all present when the read arrived.
    public var bytesFromCache: Int64 = 0
    /// Bytes of reads that had to wait for the origin.
    public var bytesFromOrigin: Int64 = 0
    public var cacheHits: Int64 = 0
    public var cacheMisses: Int64 = 0
    /// Per bucket of ``latencyBuckets`` (not cumulative), then the sum of all latencies.
    public var latencyCounts: [Int64] = Array(repeating: 0, count: MountReadMetrics.latencyBuckets.count + 1)
    public var latencySum: Double = 0
    /// Fetches running in the mount now.
    public var inFlightFetches = 0

    public init(pid: Int32, mountpoint: String) {
        self.pid = pid
        self.mountpoint = mountpoint
    }

    /// Counts one read of `bytes` that took `seconds`.
    public mutating func record(bytes: Int64, fromCache: Bool, seconds: Double) {
        if fromCache {
            bytesFromCache += bytes
            cacheHits += 1
        } else {
            bytesFromOrigin += bytes
            cacheMisses += 1
        }
        let bucket = Self.latencyBuckets.firstIndex { seconds <= $0 } ?? Self.latencyBuckets.count
        latencyCounts[bucket] += 1
        latencySum += seconds
    }

    public static func directory(_ resolver: ModelResolver) -> String { resolver.stateDir + "/mounts" }

    /// Replaces this mount's file.
    public func publish(_ resolver: ModelResolver) throws {
        let directory = Self.directory(resolver)
        try FileSystem.createDirectories(directory)
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try encoder.encode(self).write(to: URL(fileURLWithPath: directory + "/\(pid).json"), options: .atomic)
    }

    public static func remove(pid: Int32, _ resolver: ModelResolver) {
        try? FileSystem.unlink(directory(resolver) + "/\(pid).json")
    }

    /// The metrics of every mount whose process is alive.
    public static func live(_ resolver: ModelResolver) -> [MountReadMetrics] {
        let directory = Self.directory(resolver)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).compactMap { name in
            guard name.hasSuffix(".json"), let data = FileManager.default.contents(atPath: directory + "/" + name),
                  let metrics = try? decoder.decode(MountReadMetrics.self, from: data),
                  metrics.isPlausible,   // another version's buckets, or a file someone edited: skip
                  kill(metrics.pid, 0) == 0 || errno == EPERM else { return nil }
            return metrics
        }
    }

    /// Whether the numbers can be a mount's: a real process id, no negative count, a finite
    /// latency sum, this version's buckets. (Anyone who can write `.state/` can write this
    /// file; `kill(0, 0)` or `kill(-1, 0)` would "find" a live process.)
    public var isPlausible: Bool {
        pid > 1 && latencyCounts.count == Self.latencyBuckets.count + 1
            && ([bytesFromCache, bytesFromOrigin, cacheHits, cacheMisses] + latencyCounts).allSatisfy { $0 >= 0 }
            && inFlightFetches >= 0 && latencySum.isFinite && latencySum >= 0
    }
}
