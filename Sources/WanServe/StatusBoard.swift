import Foundation
import Synchronization
import WanCache
import WanCore

/// The cache's state of every manifest model, refreshed once a second by the availability
/// watcher (on a thread of its own), so the probe every orchestrator polls (`GET /health/models`)
/// answers from memory instead of stat-ing every file of every model per request. Its answer is
/// about a second old on an idle host; under heavy load the refresh gets less CPU and the board
/// lags a few seconds (the report's `timestamp` says when it was read). A board older than
/// ``maxAge`` is not trusted (a watcher that stopped): the probe then measures for itself.
final class StatusBoard: Sendable {
    struct Snapshot: Sendable {
        /// When it was taken (for its age, and for the report).
        let taken: ContinuousClock.Instant
        let takenAt: Date
        /// Each model's status, in manifest order; nil where it could not be read.
        let models: [(spec: ModelSpec, status: ModelStatus?)]
        /// Whether the state database could be opened.
        let databaseReadable: Bool
    }

    private let latest = Mutex<Snapshot?>(nil)
    /// The cache's use of the disk (a walk of MODELS_ROOT), measured every
    /// ``usageInterval``: `/metrics` and the status summary read it instead of walking the
    /// tree per request.
    private let usage = Mutex<(taken: ContinuousClock.Instant, usage: DiskUsage)?>(nil)

    func publish(_ snapshot: Snapshot) { latest.withLock { $0 = snapshot } }

    static let usageInterval = Duration.seconds(10)

    /// Whether the disk usage is due for another measurement.
    var usageIsDue: Bool { usage.withLock { $0.map { ContinuousClock.now - $0.taken >= Self.usageInterval } ?? true } }

    func publish(_ measured: DiskUsage) { usage.withLock { $0 = (.now, measured) } }

    /// The last disk usage measured, if at most `maxAge` old.
    func diskUsage(maxAge: Duration = StatusBoard.maxAge) -> DiskUsage? {
        usage.withLock { entry in entry.flatMap { ContinuousClock.now - $0.taken <= maxAge ? $0.usage : nil } }
    }

    /// The latest snapshot if it is at most `maxAge` old.
    static let maxAge = Duration.seconds(30)

    func current(maxAge: Duration = StatusBoard.maxAge) -> Snapshot? {
        latest.withLock { snapshot in
            snapshot.flatMap { ContinuousClock.now - $0.taken <= maxAge ? $0 : nil }
        }
    }
}
