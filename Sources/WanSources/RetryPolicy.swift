import Foundation
import WanCore

/// How often and how patiently a failed request is retried (`retry_attempts`,
/// `retry_backoff_factor` of the config).
///
/// Only retryable errors are retried (see ``SourceError/isRetryable``): connection
/// failures, timeouts, 408, 429, 5xx and responses that do not match their request. Other
/// 4xx are final. A server's `Retry-After` wins over the computed delay (capped).
public struct RetryPolicy: Sendable, Equatable {
    /// Retries after the first try.
    public var attempts: Int
    public var backoffFactor: Double
    /// Delay before the first retry, before jitter.
    public var baseDelay: Double
    public var maxDelay: Double
    /// The longest `Retry-After` honoured; a longer one is capped to this.
    public var maxRetryAfter: Double

    public init(attempts: Int = 3, backoffFactor: Double = 2, baseDelay: Double = 0.25, maxDelay: Double = 20,
                maxRetryAfter: Double = 60) {
        self.attempts = attempts
        self.backoffFactor = backoffFactor
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxRetryAfter = maxRetryAfter
    }

    public init(_ config: OrchestratorConfig) {
        self.init(attempts: config.retryAttempts, backoffFactor: config.retryBackoffFactor)
    }

    /// Seconds to wait before retry number `retry` (1-based) after `error`: exponential with
    /// "equal jitter" (half fixed, half random), or the server's Retry-After.
    public func delay(beforeRetry retry: Int, after error: SourceError) -> Double {
        if let asked = error.retryAfter, asked.isFinite { return min(max(asked, 0), maxRetryAfter) }
        let exponential = min(maxDelay, baseDelay * pow(backoffFactor, Double(retry - 1)))
        return exponential / 2 + Double.random(in: 0...(exponential / 2))
    }

    /// Runs `body` until it succeeds, fails with a non-retryable error, or the retries are used
    /// up; sleeps between tries, waking early to honour `cancel`.
    public func run<T>(cancel: CancellationToken, _ body: (_ attempt: Int) throws(SourceError) -> T) throws(SourceError) -> T {
        var attempt = 0
        while true {
            do {
                return try body(attempt)
            } catch {
                guard error.isRetryable, attempt < attempts, !cancel.isCancelled else { throw error }
                attempt += 1
                try RetryPolicy.sleep(delay(beforeRetry: attempt, after: error), cancel: cancel, source: error.source)
            }
        }
    }

    /// Sleeps in short slices so a cancel is noticed within 50 ms.
    static func sleep(_ seconds: Double, cancel: CancellationToken, source: String) throws(SourceError) {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if cancel.isCancelled { throw SourceError(.cancelled, source: source, message: "cancelled") }
            Thread.sleep(forTimeInterval: min(0.05, max(0, deadline.timeIntervalSinceNow)))
        }
    }

    /// Parses `Retry-After`: delta-seconds (digits only) or an HTTP date; anything else
    /// (negative, fractional, `inf`, `nan`, absurdly long) is ignored.
    public static func parseRetryAfter(_ value: String?, now: Date = Date()) -> Double? {
        guard let value = value?.trimmingCharacters(in: .whitespaces), !value.isEmpty, value.count <= 64 else { return nil }
        if let seconds = Int64(strictDecimal: value) { return Double(seconds) }
        if value.first?.isNumber == true || value.first == "-" || value.first == "+" { return nil }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return max(0, date.timeIntervalSince(now))
    }
}
