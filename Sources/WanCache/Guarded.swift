import Foundation

/// A value behind one lock, with a condition to wait on. The fetcher keeps all of its state
/// that must change together in one such value; waiting for it to change is part of the same
/// lock, so no wake-up is ever missed between a check and the wait.
/// `@unchecked Sendable`: the value is only reached under `condition`, a condition variable
/// (which `Mutex` cannot wait on).
final class Guarded<Value>: @unchecked Sendable {
    private let condition = NSCondition()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    /// Runs `body` with the value locked; wakes every waiter afterwards when `notify`.
    func withLock<R>(notify: Bool = false, _ body: (inout Value) throws -> R) rethrows -> R {
        condition.lock()
        defer {
            if notify { condition.broadcast() }
            condition.unlock()
        }
        return try body(&value)
    }

    /// What one step of ``loop(_:)`` decided.
    enum Step<R> {
        /// Done: the loop returns this.
        case finished(R)
        /// Nothing to do until the value changes or `until`: wait (the lock is released while waiting).
        case wait(until: Date)
        /// Run this with the lock released (a call out: a callback, I/O), then step again.
        case unlocked(() throws -> Void)
    }

    /// Steps until a step finishes (or throws); the lock is held across each step and its wait.
    func loop<R>(_ step: (inout Value) throws -> Step<R>) throws -> R {
        condition.lock()
        defer { condition.unlock() }
        while true {
            switch try step(&value) {
            case .finished(let result):
                return result
            case .wait(let deadline):
                _ = condition.wait(until: deadline)
            case .unlocked(let work):
                condition.unlock()
                do {
                    try work()
                } catch {
                    condition.lock()
                    throw error
                }
                condition.lock()
            }
        }
    }
}
