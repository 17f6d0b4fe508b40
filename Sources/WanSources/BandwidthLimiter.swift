import Foundation
import Synchronization

/// A token bucket shared by the transfers it limits: together they receive at most
/// `bytesPerSecond` on average (bursts up to a tenth of a second's worth).
///
/// The engine calls `consume` from the write callback; sleeping there stops reading from
/// the socket, so TCP flow control slows the sender. libcurl's own
/// CURLOPT_MAX_RECV_SPEED_LARGE is set as well, but on fast links 7.88 lets whole
/// megabytes through before it starts to throttle, so this bucket is what makes the cap hold.
public final class BandwidthLimiter: Sendable {
    public let bytesPerSecond: Int64
    private struct State {
        var tokens: Double
        var last: Date
    }
    private let state: Mutex<State>

    public init(bytesPerSecond: Int64) {
        self.bytesPerSecond = max(1, bytesPerSecond)
        state = Mutex(State(tokens: Double(self.bytesPerSecond) / 10, last: Date()))
    }

    /// Takes `count` bytes from the bucket, sleeping until they are allowed.
    public func consume(_ count: Int) {
        let wait = state.withLock { s -> Double in
            let now = Date()
            let rate = Double(bytesPerSecond)
            s.tokens = min(rate / 10, s.tokens + now.timeIntervalSince(s.last) * rate)
            s.last = now
            s.tokens -= Double(count)
            return s.tokens < 0 ? -s.tokens / rate : 0
        }
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }
}
