import Foundation

/// Results written by concurrent workers (`DispatchQueue.concurrentPerform`), one slot each.
public final class Slots<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [Value?]

    public init(count: Int) { storage = Array(repeating: nil, count: count) }

    public func set(_ index: Int, _ value: Value?) { lock.withLock { storage[index] = value } }

    public var values: [Value?] { lock.withLock { storage } }
}
