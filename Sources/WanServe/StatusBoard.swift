import Foundation
import Synchronization
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

    func publish(_ snapshot: Snapshot) { latest.withLock { $0 = snapshot } }

    /// The latest snapshot if it is at most `maxAge` old.
    static let maxAge = Duration.seconds(30)

    func current(maxAge: Duration = StatusBoard.maxAge) -> Snapshot? {
        latest.withLock { snapshot in
            snapshot.flatMap { ContinuousClock.now - $0.taken <= maxAge ? $0 : nil }
        }
    }
}
