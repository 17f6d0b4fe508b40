import Synchronization

/// Decides, for each open of a file, whether the kernel serves its reads itself from the
/// blob (FUSE passthrough) or sends them to us (cached mode), following the kernel's rules
/// for one inode (fs/fuse/iomode.c):
///
/// - a passthrough open fails (ETXTBSY) while the inode has opens in cached mode, so a file
///   first opened while it was still being fetched stays cached until those opens close;
/// - while the inode has a backing file, every new open must pass through to that same
///   backing file, so the first passthrough open registers one backing id and every later
///   open shares it; the id is unregistered when the last of them closes.
///
/// Pure bookkeeping: registering and unregistering with the kernel are closures the FUSE
/// adapter supplies, so the rules are testable without a mount.
public final class PassthroughOpens: Sendable {
    /// How one open is served.
    public enum Mode: Sendable, Equatable {
        case cached
        case passthrough(backingID: Int32)
    }

    struct Inode: Codable, Sendable, Equatable {
        var cachedOpens = 0
        var passthroughOpens = 0
        var backingID: Int32 = 0
    }

    struct Open: Codable, Sendable, Equatable {
        var ino: UInt64
        var passthrough: Bool
    }

    /// Everything this keeps: a daemon taking over the connection carries it on, since the
    /// kernel still holds these opens and backing ids.
    struct State: Codable, Sendable, Equatable {
        var inodes: [UInt64: Inode] = [:]
        var handles: [UInt64: Open] = [:]
        /// Set when the kernel refused a backing file: from then on every open is cached.
        var refused = false
    }

    private let state = Mutex(State())
    /// Told the backing ids registered now (inode → id) whenever one is registered or
    /// unregistered: a daemon carrying the connection on after a crash needs them, since the
    /// kernel keeps them and refuses any other open of those inodes.
    private let backingChanged = Mutex<(@Sendable ([UInt64: Int32]) -> Void)?>(nil)

    public init() {}

    func onBackingChange(_ body: @escaping @Sendable ([UInt64: Int32]) -> Void) {
        backingChanged.withLock { $0 = body }
    }

    /// The backing ids registered now, by inode.
    var backingIDs: [UInt64: Int32] { state.withLock { Self.backingIDs($0) } }

    private static func backingIDs(_ state: State) -> [UInt64: Int32] {
        state.inodes.compactMapValues { $0.passthroughOpens > 0 && $0.backingID > 0 ? $0.backingID : nil }
    }

    /// After a crash: the inodes the dead daemon passed through keep their backing ids, held
    /// by an open this daemon never sees close (the kernel keeps them until the unmount).
    func restoreAfterCrash(_ ids: [UInt64: Int32]) {
        state.withLock { state in
            for (ino, id) in ids where id > 0 {
                state.inodes[ino] = Inode(cachedOpens: 0, passthroughOpens: 1, backingID: id)
            }
        }
    }

    private func tellBackingChange(_ ids: [UInt64: Int32]?) {
        guard let ids, let body = backingChanged.withLock({ $0 }) else { return }
        body(ids)
    }

    /// What this holds now (for the daemon taking over), and what it held in the daemon that
    /// handed over (before any open of this one).
    var saved: State {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }

    /// Whether the kernel refused a backing file (say, the daemon lacks CAP_SYS_ADMIN); the
    /// mount then serves every read itself.
    public var refused: Bool { state.withLock { $0.refused } }

    /// The mode of a new open `handle` of inode `ino`.
    ///
    /// - Parameters:
    ///   - backing: the complete, verified file to pass through to; nil while the file is
    ///     still being fetched (then the open is cached, unless the inode already passes
    ///     through, which only happens for complete files).
    ///   - register: registers a descriptor with the kernel; returns its backing id, or nil
    ///     when the kernel refuses. Called with the table locked, at most once per inode
    ///     until its passthrough opens have all closed.
    public func open(handle: UInt64, ino: UInt64, backing: Int32?, register: (Int32) -> Int32?) -> Mode {
        var changed: [UInt64: Int32]?
        defer { tellBackingChange(changed) }
        return state.withLock { state in
            var inode = state.inodes[ino] ?? Inode()
            defer {
                state.inodes[ino] = inode
                if inode.passthroughOpens == 1 && changed == nil && state.handles[handle]?.passthrough == true { changed = Self.backingIDs(state) }
            }
            if inode.passthroughOpens > 0 {
                inode.passthroughOpens += 1
                state.handles[handle] = Open(ino: ino, passthrough: true)
                return .passthrough(backingID: inode.backingID)
            }
            if let backing, inode.cachedOpens == 0, !state.refused {
                if let id = register(backing), id > 0 {
                    inode.passthroughOpens = 1
                    inode.backingID = id
                    state.handles[handle] = Open(ino: ino, passthrough: true)
                    return .passthrough(backingID: id)
                }
                state.refused = true
            }
            inode.cachedOpens += 1
            state.handles[handle] = Open(ino: ino, passthrough: false)
            return .cached
        }
    }

    /// `handle` was released (or its open reply never reached the kernel). Returns the
    /// backing id to unregister when it was the inode's last passthrough open.
    public func release(handle: UInt64) -> Int32? {
        var changed: [UInt64: Int32]?
        defer { tellBackingChange(changed) }
        return state.withLock { state in
            guard let open = state.handles.removeValue(forKey: handle), var inode = state.inodes[open.ino] else { return nil }
            let (ino, passthrough) = (open.ino, open.passthrough)
            var unregister: Int32?
            if passthrough {
                inode.passthroughOpens -= 1
                if inode.passthroughOpens == 0 {
                    unregister = inode.backingID
                    inode.backingID = 0
                }
            } else {
                inode.cachedOpens -= 1
            }
            state.inodes[ino] = inode.cachedOpens == 0 && inode.passthroughOpens == 0 ? nil : inode
            if unregister != nil { changed = Self.backingIDs(state) }
            return unregister
        }
    }
}
