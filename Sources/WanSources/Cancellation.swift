import Synchronization

/// A flag that stops in-flight transfers: the engine checks it while bytes flow (and while
/// waiting to retry) and ends the transfer with a `.cancelled` error.
public final class CancellationToken: Sendable {
    private let flag = Atomic<Bool>(false)
    /// Cancelling the parent cancels this token too (not the other way round).
    private let parent: CancellationToken?

    public init() { parent = nil }

    /// A token cancelled with `parent`, or on its own (one transfer of many).
    public init(parent: CancellationToken) { self.parent = parent }

    public var isCancelled: Bool { flag.load(ordering: .relaxed) || (parent?.isCancelled ?? false) }

    public func cancel() { flag.store(true, ordering: .relaxed) }

    /// A token that is never cancelled.
    public static let none = CancellationToken()
}
