import Foundation
import Synchronization

/// Per-source memory of recent failures, so a source that just failed is skipped for a
/// cool-down instead of being hammered by every reader.
///
/// A source enters cool-down when a request to it fails for availability reasons (after its
/// retries): 5 s, doubling with each consecutive failure up to 5 minutes. One success clears it.
/// Missing files, auth errors and corrupt bytes say nothing about availability and do not count.
public final class SourceHealth: Sendable {
    public struct Entry: Sendable, Equatable {
        public var consecutiveFailures: Int
        public var coolingDownUntil: Date
        public var lastError: String
    }

    private let entries = Mutex<[String: Entry]>([:])
    private let baseCooldown: Double
    private let maxCooldown: Double

    public init(baseCooldown: Double = 5, maxCooldown: Double = 300) {
        self.baseCooldown = baseCooldown
        self.maxCooldown = maxCooldown
    }

    public static let shared = SourceHealth()

    public func isCoolingDown(_ source: String, now: Date = Date()) -> Bool {
        entries.withLock { $0[source].map { $0.coolingDownUntil > now } ?? false }
    }

    public func entry(_ source: String) -> Entry? { entries.withLock { $0[source] } }

    public func recordSuccess(_ source: String) {
        _ = entries.withLock { $0.removeValue(forKey: source) }
    }

    public func recordFailure(_ source: String, error: SourceError, now: Date = Date()) {
        switch error.kind {
        case .network, .timeout, .serverError, .throttled:
            entries.withLock { table in
                let failures = (table[source]?.consecutiveFailures ?? 0) + 1
                let cooldown = min(maxCooldown, baseCooldown * pow(2, Double(failures - 1)))
                table[source] = Entry(consecutiveFailures: failures, coolingDownUntil: now.addingTimeInterval(cooldown),
                                      lastError: error.message)
            }
        default:
            break
        }
    }
}
