import Foundation
import Synchronization

/// Fans the sidecar's events (seed 002's WebSocket messages) out to every connected client:
/// each subscriber gets its own stream of JSON text frames. A slow client drops its oldest
/// frames (a bounded buffer), never slowing the publisher.
final class EventHub: Sendable {
    private let subscribers = Mutex<[UUID: AsyncStream<String>.Continuation]>([:])

    /// The stream of frames published from now on; it ends when the caller stops iterating.
    func subscribe() -> AsyncStream<String> {
        let id = UUID()
        let (stream, continuation) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
        continuation.onTermination = { [weak self] _ in _ = self?.subscribers.withLock { $0.removeValue(forKey: id) } }
        subscribers.withLock { $0[id] = continuation }
        return stream
    }

    /// Sends `event` as one JSON text frame to every subscriber.
    func publish(_ event: some Encodable) {
        guard let data = try? SidecarJSON.encoder.encode(event), let text = String(data: data, encoding: .utf8) else { return }
        for continuation in subscribers.withLock({ Array($0.values) }) { continuation.yield(text) }
    }

    var subscriberCount: Int { subscribers.withLock { $0.count } }
}

/// The messages of seed 002's WebSocket (`/ws`), each with its `type`.
enum Event {
    struct DownloadProgress: Encodable {
        let type = "model_download_progress"
        let modelID: String
        let progressPercent: Double
        let speedMbps: Double
        let etaSeconds: Nullable<Int>
        let status: String
        let timestamp: Date
    }

    struct AvailabilityChange: Encodable {
        let type = "model_availability_change"
        let modelID: String
        let oldStatus: String
        let newStatus: String
        let timestamp: Date
    }

    struct HealthAlert: Encodable {
        let type = "model_health_alert"
        let modelID: String
        let alertType: String
        let severity: String
        let message: String
        let recommendedAction: String
        let timestamp: Date
    }

    struct FallbackSuggestion: Encodable {
        let type = "fallback_suggestion"
        let requestedModel: String
        let suggestedModel: String
        let compatibilityScore: Double
        let userActionRequired: Bool
        let timeoutSeconds: Int
        let timestamp: Date
    }
}
