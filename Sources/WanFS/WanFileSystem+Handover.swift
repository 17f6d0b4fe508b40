import Foundation
import WanCache
import WanCore

/// What a daemon taking over the mount needs of this one's filesystem: the tree with its
/// inode numbers, and every handle the kernel still holds (the kernel keeps sending their
/// numbers, and keeps their passthrough backing ids).
extension WanFileSystem {
    struct HandoverState: Codable, Sendable {
        struct OpenHandle: Codable, Sendable {
            var handle: UInt64
            var ino: UInt64
            /// The handle was served bytes not yet verified (verify=lazy, no chunk digests).
            var servedUnverified: Bool
        }
        var table: InodeTable.Snapshot
        var handles: [OpenHandle]
        var passthrough: PassthroughOpens.State
        var nextHandle: UInt64
        /// The mount's read metrics, so the sidecar's counters go on.
        var metrics: MountReadMetrics?
        /// The connection outlived a daemon that died: handles and backing files it left stay
        /// unknown (see ``recoverAfterCrash(table:epoch:)``).
        var recovered: Bool?
    }

    /// The state to hand over. Taken while no request is being served (the workers are parked).
    var handoverState: HandoverState {
        let handles = self.handles.withLock { table in
            table.map { HandoverState.OpenHandle(handle: $0.key, ino: $0.value.ino, servedUnverified: $0.value.unverifiedGeneration != nil) }
        }
        return HandoverState(table: table.snapshot, handles: handles.sorted { $0.handle < $1.handle }, passthrough: passthrough.saved,
                             nextHandle: nextHandle.load(ordering: .relaxed), metrics: usage.metrics,
                             recovered: recovered.load(ordering: .relaxed))
    }

    struct HandoverError: Error, CustomStringConvertible {
        let description: String
    }

    /// Carries on what the previous daemon handed over, before this one serves anything: its
    /// tree (then this daemon's manifest shown over it, as a reload would), its handles and
    /// its passthrough opens. Returns what the kernel must forget of the tree.
    func adopt(_ state: HandoverState) throws(HandoverError) -> Invalidations {
        let changes = try showOver(state.table)
        var restored: [UInt64: Handle] = [:]
        for open in state.handles {
            do {
                restored[open.handle] = try makeHandle(ino: open.ino, servedUnverified: open.servedUnverified)
            } catch {
                throw HandoverError(description: "handle \(open.handle): \(error)")
            }
        }
        let highest = min(state.handles.map(\.handle).max() ?? 0, UInt64.max >> 1)
        handles.withLock { $0 = restored }
        nextHandle.store(max(min(state.nextHandle, UInt64.max >> 1), highest + 1), ordering: .relaxed)
        passthrough.saved = state.passthrough
        if let metrics = state.metrics { usage.carryOn(metrics) }
        if state.recovered == true { recovered.store(true, ordering: .relaxed) }
        return changes
    }
}

// MARK: - After a crash

extension WanFileSystem {
    /// Handle numbers carry the daemon's epoch in their high bits: a daemon that carries on
    /// after a crash counts from a new epoch, so its handles never collide with those the
    /// kernel still holds from the dead one.
    static let epochShift: UInt64 = 40

    /// The epoch of the handles this daemon gives out.
    var epoch: UInt64 { nextHandle.load(ordering: .relaxed) >> Self.epochShift }

    /// Carries on a connection whose daemon died: its tree (saved at every change, so inode
    /// numbers the kernel caches keep their meaning), this daemon's manifest shown over it,
    /// handles from `epoch` (saved before this daemon serves, so a daemon that dies at once
    /// does not hand the next one the same numbers). Handles of the dead daemon are made
    /// again from their inode on their first read; inodes it passed through keep their
    /// backing ids (the kernel refuses any other kind of open of them).
    func recoverAfterCrash(table snapshot: InodeTable.Snapshot, epoch: UInt64, backingIDs: [UInt64: Int32]) throws(HandoverError) -> Invalidations {
        let changes = try showOver(snapshot)
        recovered.store(true, ordering: .relaxed)
        nextHandle.store((epoch << Self.epochShift) + 1, ordering: .relaxed)
        passthrough.restoreAfterCrash(backingIDs)
        return changes
    }

    /// A handle of the dead daemon, made again from its inode (only after a crash).
    func recreatedHandle(_ id: UInt64, ino: UInt64) throws(FSError) -> Handle? {
        guard recovered.load(ordering: .relaxed), ino != 0 else { return nil }
        let handle: Handle
        do { handle = try makeHandle(ino: ino, servedUnverified: false) } catch { throw .io(error.description) }
        return handles.withLock { table in
            if let raced = table[id] { return raced }
            table[id] = handle
            return handle
        }
    }

    /// The tree of `snapshot` with this daemon's manifest shown over it (as a reload would).
    func showOver(_ snapshot: InodeTable.Snapshot) throws(HandoverError) -> Invalidations {
        let previous: InodeTable
        do { previous = try InodeTable(snapshot: snapshot) } catch { throw HandoverError(description: "the running mount's tree: \(error)") }
        return current.withLock { current in
            let table = InodeTable(registry: current.registry, reusing: previous)
            current.table = table
            return Invalidations(entries: table.detached, directories: table.changedDirectories)
        }
    }

    /// A handle of inode `ino`, as an open makes it (without passthrough).
    func makeHandle(ino: UInt64, servedUnverified: Bool) throws(HandoverError) -> Handle {
        guard let node = table.node(ino) else { throw HandoverError(description: "inode \(ino) is not in the tree") }
        switch node.kind {
        case .directory:
            throw HandoverError(description: "inode \(ino) is a directory")
        case .control(let file):
            return Handle(ino: ino, model: nil, fetcher: nil, generated: generate(file))
        case .text(let content):
            return Handle(ino: ino, model: nil, fetcher: nil, generated: Array(content.utf8))
        case .file(let model, let spec, let file):
            // A fetcher that cannot be made now fails this handle's reads (EIO), not the rest.
            let fetcher = try? engine.fetcher(for: file, of: spec)
            var handle = Handle(ino: ino, model: model, fetcher: fetcher, generated: nil, spec: spec, file: file)
            if servedUnverified, let fetcher { handle.unverifiedGeneration = fetcher.snapshot.generation }
            usage.opened(model: model)
            return handle
        }
    }
}
