import Foundation
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
    }

    /// The state to hand over. Taken while no request is being served (the workers are parked).
    var handoverState: HandoverState {
        let handles = self.handles.withLock { table in
            table.map { HandoverState.OpenHandle(handle: $0.key, ino: $0.value.ino, servedUnverified: $0.value.unverifiedGeneration != nil) }
        }
        return HandoverState(table: table.snapshot, handles: handles.sorted { $0.handle < $1.handle }, passthrough: passthrough.saved,
                             nextHandle: nextHandle.load(ordering: .relaxed))
    }

    struct HandoverError: Error, CustomStringConvertible {
        let description: String
    }

    /// Carries on what the previous daemon handed over, before this one serves anything: its
    /// tree (then this daemon's manifest shown over it, as a reload would), its handles and
    /// its passthrough opens. Returns what the kernel must forget of the tree.
    func adopt(_ state: HandoverState) throws(HandoverError) -> Invalidations {
        let previous: InodeTable
        do { previous = try InodeTable(snapshot: state.table) } catch { throw HandoverError(description: "the running mount's tree: \(error)") }
        let changes = current.withLock { current in
            let table = InodeTable(registry: current.registry, reusing: previous)
            current.table = table
            return Invalidations(entries: table.detached, directories: table.changedDirectories)
        }
        let table = self.table
        var restored: [UInt64: Handle] = [:]
        for open in state.handles {
            guard let node = table.node(open.ino) else { throw HandoverError(description: "handle \(open.handle) names inode \(open.ino), not in the tree") }
            switch node.kind {
            case .directory:
                throw HandoverError(description: "handle \(open.handle) names a directory")
            case .control(let file):
                restored[open.handle] = Handle(ino: open.ino, model: nil, fetcher: nil, generated: generate(file))
            case .text(let content):
                restored[open.handle] = Handle(ino: open.ino, model: nil, fetcher: nil, generated: Array(content.utf8))
            case .file(let model, let spec, let file):
                // A fetcher that cannot be made now fails this handle's reads (EIO), not the takeover.
                let fetcher = try? engine.fetcher(for: file, of: spec)
                var handle = Handle(ino: open.ino, model: model, fetcher: fetcher, generated: nil)
                if open.servedUnverified, let fetcher { handle.unverifiedGeneration = fetcher.snapshot.generation }
                restored[open.handle] = handle
                usage.opened(model: model)
            }
        }
        let highest = state.handles.map(\.handle).max() ?? 0
        handles.withLock { $0 = restored }
        nextHandle.store(max(state.nextHandle, highest + 1), ordering: .relaxed)
        passthrough.saved = state.passthrough
        return changes
    }
}
