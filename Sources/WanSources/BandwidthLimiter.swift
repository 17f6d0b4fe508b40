import Foundation
import Synchronization

/// A token bucket shared by the transfers it limits: together they receive at most
/// `bytesPerSecond` on average (bursts up to a tenth of a second's worth). The rate can be
/// changed while transfers run (the sidecar's per-download `bandwidth` action); 0 means
/// unlimited.
///
/// The engine calls `consume` from the write callback; sleeping there stops reading from
/// the socket, so TCP flow control slows the sender. (libcurl's CURLOPT_MAX_RECV_SPEED_LARGE
/// is not used: on fast links 7.88 lets whole megabytes through before it throttles, and it
/// is fixed per transfer, so a changed rate would wait for the next request.)
public final class BandwidthLimiter: Sendable {
    private struct State {
        var rate: Int64
        var tokens: Double
        var last: Date
    }
    private let state: Mutex<State>

    /// - Parameter bytesPerSecond: the cap; 0 (or less) = unlimited.
    public init(bytesPerSecond: Int64) {
        let rate = max(0, bytesPerSecond)
        state = Mutex(State(rate: rate, tokens: Double(rate) / 10, last: Date()))
    }

    /// The current cap in bytes per second; 0 = unlimited.
    public var bytesPerSecond: Int64 { state.withLock { $0.rate } }

    /// Changes the cap (0 = unlimited); transfers in progress follow from their next bytes.
    public func setRate(_ bytesPerSecond: Int64) {
        state.withLock { s in
            s.rate = max(0, bytesPerSecond)
            s.tokens = min(s.tokens, Double(s.rate) / 10)
            s.last = Date()
        }
    }

    /// Takes `count` bytes from the bucket, sleeping until they are allowed. It sleeps in
    /// slices of at most 100 ms and looks at the rate again after each, so a raised (or
    /// removed) cap takes effect at once.
    public func consume(_ count: Int) {
        var owed = Double(count)
        while true {
            let wait = state.withLock { s -> Double in
                guard s.rate > 0 else { return 0 }
                let now = Date()
                let rate = Double(s.rate)
                s.tokens = min(rate / 10, s.tokens + now.timeIntervalSince(s.last) * rate)
                s.last = now
                s.tokens -= owed
                owed = 0
                return s.tokens < 0 ? -s.tokens / rate : 0
            }
            guard wait > 0 else { return }
            Thread.sleep(forTimeInterval: min(wait, 0.1))
        }
    }
}
