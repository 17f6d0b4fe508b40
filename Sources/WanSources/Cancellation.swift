import Synchronization

/// A flag that stops in-flight transfers: the engine checks it while bytes flow (and while
/// waiting to retry) and ends the transfer with a `.cancelled` error.
public final class CancellationToken: Sendable {
    private let flag = Atomic<Bool>(false)

    public init() {}

    public var isCancelled: Bool { flag.load(ordering: .relaxed) }

    public func cancel() { flag.store(true, ordering: .relaxed) }

    /// A token that is never cancelled.
    public static let none = CancellationToken()
}
