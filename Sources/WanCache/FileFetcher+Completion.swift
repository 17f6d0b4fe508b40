import Foundation
import WanCore
import WanSources
import WanSystem

/// The second job of a ``FileFetcher``: finishing a file and owning it across processes.
/// Persisting the partial file, the whole-file digest, the commit into `.blobs/` or the
/// quarantine of bad bytes, the fetcher's state transitions, and the file lock that makes one
/// process at a time write a content (taken, followed and let go of when idle). Serving reads,
/// waiting and scheduling fetch jobs stay in FileFetcher.swift.
extension FileFetcher {
    // MARK: - Persistence

    /// Syncs the partial file and compacts its map (a job's end, idle, commit). A failure is
    /// reported to the waiters and what is remembered about the file is dropped: after a
    /// failed sync the kernel may have let go of the very bytes the map claims.
    func persist() {
        let (partial, ranges, generation) = guarded.withLock { ($0.partial, $0.ledger.present, $0.generation) }
        guard let partial, partial.isWritable else { return }
        do {
            try partial.persist(ranges)
        } catch {
            guarded.withLock(notify: true) { s in
                s.localFailure = (error, Date())
                if s.generation == generation && s.phase != .complete { resetGeneration(&s) }
            }
        }
    }

    // MARK: - Whole-file digest and commit

    /// Queues the digest's catch-up on the hash workers, unless one is queued already (it will
    /// see the newest bytes). Lock held. `deferrable`: it may wait, and pause, while the engine
    /// fetches (``HashWorkers``): only with chunk digests, where every byte served was verified
    /// already and the whole-file digest only decides the commit.
    func requestHash(_ s: inout State, deferrable: Bool = false) {
        submitHash(&s, deferrable: deferrable, queued: .now)
    }

    /// ``requestHash(_:deferrable:)`` for a digest first asked for at `queued` (a paused one
    /// keeps its place in the deferral).
    private func submitHash(_ s: inout State, deferrable: Bool, queued: ContinuousClock.Instant) {
        guard s.phase == .partial || s.phase == .verifying else { return }
        let deferrable = deferrable && content.chunks != nil
        // One queued already sees the newest bytes; a deferrable one does not stand for a
        // digest wanted now.
        if s.hashQueued && (!s.hashQueuedDeferrable || deferrable) { return }
        if s.hashing {
            s.hashPendingDeferrable = s.hashPending ? s.hashPendingDeferrable && deferrable : deferrable
            s.hashPending = true
            return
        }
        s.hashQueued = true
        s.hashQueuedDeferrable = deferrable
        hashWorkers.submit(deferrable: deferrable, queued: queued) { [self] in runDigest(deferredSince: deferrable ? queued : nil) }
    }

    /// Hashes what is present beyond the digest's edge; once every byte is in, commits the
    /// file or quarantines it. One thread at a time. A deferred digest (`deferredSince`) stops
    /// when the engine fetches again, and is queued again to go on from there.
    private func runDigest(deferredSince queued: ContinuousClock.Instant?) {
        let job = guarded.withLock { s -> (PartialFile, WholeFileDigest, Int64, Bool, Int)? in
            s.hashQueued = false
            if s.hashing && queued == nil {
                // A digest wanted now found a deferrable one running: it must not pause for good.
                s.hashPending = true
                s.hashPendingDeferrable = false
            }
            guard !s.hashing, s.phase == .partial || s.phase == .verifying, let partial = s.partial, partial.isWritable else { return nil }
            s.hashing = true
            s.hashPending = false
            let complete = s.ledger.isComplete
            return (partial, s.digest, complete ? content.size : s.ledger.present.contiguousPrefix, complete, s.generation)
        }
        guard let (partial, digest, upTo, complete, generation) = job else {
            releaseIfIdle()
            return
        }
        do {
            let pause = queued.map { queued in { @Sendable [hashWorkers] in hashWorkers.shouldPause(queuedAt: queued) } }
            let reached = try digest.catchUp(from: partial.file.descriptor, to: upTo, pause: pause)
            if complete, reached, let hex = digest.finish() {
                finish(hex, partial: partial, generation: generation)
                return
            }
            guarded.withLock(notify: true) { s in
                s.hashing = false
                if !reached, let queued {
                    // Paused: queued again, at once if a digest was asked for meanwhile that
                    // cannot wait.
                    let wanted = s.hashPending && !s.hashPendingDeferrable
                    s.hashPending = false
                    submitHash(&s, deferrable: !wanted, queued: queued)
                } else if s.hashPending {
                    requestHash(&s, deferrable: s.hashPendingDeferrable)
                }
            }
        } catch {
            guarded.withLock(notify: true) { s in
                s.hashing = false
                s.localFailure = (error, Date())
            }
        }
        releaseIfIdle()
    }

    /// The whole file is hashed: commit it as a blob, or quarantine it and start over.
    private func finish(_ digest: String, partial: PartialFile, generation: Int) {
        persist()
        guard digest == content.sha256 else {
            quarantine(actual: digest, partial: partial, generation: generation)
            return
        }
        do {
            let blob = try store.commit(partial, content: content, digest: digest)
            // The history is written before waiters wake: a CLI that exits right after must not lose it.
            let (fetched, started, source) = guarded.withLock { ($0.fetchedBytes, $0.fetchStarted, $0.lastSource) }
            try? state?.setFileState(nil, sha256: content.sha256)
            if fetched > 0 {
                try? state?.recordDownload(.init(model: model, path: content.path, sha256: content.sha256, source: source, bytes: fetched,
                                                 duration: started.map { Date().timeIntervalSince($0) } ?? 0, outcome: "completed"))
            }
            onCommit?(blobPath)
            guarded.withLock(notify: true) { s in
                s.hashing = false
                complete(&s, blob: blob)
            }
        } catch {
            guarded.withLock(notify: true) { s in
                s.hashing = false
                s.localFailure = (error, Date())
                if s.generation == generation && !partial.isCurrent { resetGeneration(&s) }
            }
            releaseIfIdle()
        }
    }

    /// Moves the bad bytes aside and starts over without the sources that served them; when
    /// no source is left the file is CORRUPT, and every wait fails with CHECKSUM_FAIL until
    /// the cool-down is over.
    private func quarantine(actual: String, partial: PartialFile, generation: Int) {
        let now = Date()
        let coolDown = settings.corruptCoolDown
        // The culprits are excluded before the bad bytes move: a thread that finds the partial
        // file gone starts the next generation at once, and its jobs must not ask them again.
        // (Excluded after the rename, a loaded machine let a job of the next generation fetch
        // from the bad source in between, and the file was quarantined twice.)
        let (culprits, fetchedHere, fetched) = guarded.withLock { s in
            let culprits = content.chunks == nil ? s.servedBy : []
            for culprit in culprits { s.excluded[culprit] = now.addingTimeInterval(coolDown) }
            return (culprits, s.ledger.fetchedHere, s.fetchedBytes)
        }
        // The bad bytes and their map go aside; if that fails, waiters are told (the next owner
        // digests what is left there again before anything is committed).
        var moveFailure: (any Error)?
        do {
            if partial.isCurrent {
                let tmp = try root.tmp()
                try root.quarantine(CacheRoot.partialName(content.sha256), in: tmp, as: "\(content.sha256).part")
                try tmp.remove(CacheRoot.mapName(content.sha256))
            }
        } catch {
            moveFailure = error
        }
        partial.closeMap()
        // With chunk digests every chunk a source sent matched its digest, so no source is to
        // blame. If this process checked every chunk itself, the chunks and the sha256 of the
        // manifest entry disagree: fetching again cannot help.
        // Without digests, a file whose every byte this process fetched and no source can be
        // blamed for (an empty file) is as wrong as the manifest entry.
        let inconsistent = fetchedHere && culprits.isEmpty
        let remaining = reader.backends.filter { !culprits.contains($0.displayName) }
        let mismatch = OrchestratorError.checksumMismatch(path: content.path, expected: content.sha256, actual: actual)
        let giveUp = inconsistent || remaining.isEmpty
        // Recorded before anyone is woken: a CLI that exits on the error must leave the mark behind.
        let why = !inconsistent ? "served by \(culprits.sorted().joined(separator: ", "))"
            : content.size == 0 ? "the manifest entry is wrong: an empty file's sha256 is \(actual)"
            : "every chunk matched its digest but the whole file does not match its sha256: the manifest entry is inconsistent"
        try? state?.setFileState(giveUp ? .corrupt : nil, sha256: content.sha256, size: content.size, detail: "\(mismatch); \(why)")
        try? state?.recordDownload(.init(model: model, path: content.path, sha256: content.sha256,
                                         source: culprits.sorted().joined(separator: ","), bytes: fetched, duration: 0,
                                         outcome: "corrupt", error: mismatch.description))
        guarded.withLock(notify: true) { s in
            s.hashing = false
            guard s.generation == generation else { return }
            if let moveFailure { s.localFailure = (moveFailure, now) }
            resetGeneration(&s)
            if giveUp {
                s.phase = .corrupt
                s.corrupt = (mismatch, now.addingTimeInterval(coolDown))
            }
        }
        onDiscard?(content.sha256)
        releaseIfIdle()
    }

    // MARK: - State transitions (lock held)

    /// Forgets everything about the partial file (it is gone, replaced or found bad): a new
    /// generation starts from nothing. Jobs of the old one change nothing when they end.
    func resetGeneration(_ s: inout State) {
        s.generation += 1
        s.ledger.reset()
        s.digest = WholeFileDigest(size: content.size)
        s.tickets = [:]
        s.badChunks = [:]
        s.servedBy = []
        s.partial?.closeMap()
        s.partial = nil
        s.blob = nil
        s.phase = .partial
    }

    private func complete(_ s: inout State, blob: Blob) {
        s.phase = .complete
        s.blob = blob
        s.ledger.markComplete()
        s.partial?.closeMap()
        s.partial = nil
        s.corrupt = nil
        s.tickets = [:]
        s.ownership?.release()
        s.ownership = nil
    }

    // MARK: - Ownership across processes (lock held)

    /// Takes the exclusive file lock if nobody else has it; the owner may fetch. Taking it
    /// (again) checks that the partial file remembered is still the one at its path.
    func takeOwnership(_ s: inout State) -> Bool {
        if s.ownership != nil, s.partial?.isWritable == true { return true }
        guard s.phase == .partial || s.phase == .verifying else { return false }
        if s.ownership == nil {
            let lock: LockManager.Lock?
            do {
                lock = try locks.tryAcquire(LockManager.fileLockName(content.sha256))
            } catch {
                s.localFailure = (error, Date())
                return false
            }
            guard let lock else { return false }
            s.ownership = lock
        }
        // Nobody else may now create, remove or commit this content's partial file.
        if adoptBlob(&s) {
            s.ownership?.release()
            s.ownership = nil
            return false
        }
        do {
            guard content.size > 0 else {
                try openEmpty(&s)
                return true
            }
            let (partial, recorded) = try PartialFile.openForFetch(content, root: root, policy: policy)
            if let known = s.partial, known.identity != partial.identity {
                resetGeneration(&s)   // removed or replaced since: what we knew about it is void
            }
            s.partial = partial
            learn(&s, recorded)
        } catch {
            s.ownership?.release()
            s.ownership = nil
            s.localFailure = (error, Date())
            return false
        }
        return true
    }

    /// An empty content needs no fetch: its partial file is an empty file, digested at once.
    private func openEmpty(_ s: inout State) throws {
        let (partial, _) = try PartialFile.openForFetch(content, root: root, policy: policy)
        s.partial = partial
        if !s.hashing { requestHash(&s) }
    }

    /// Takes in ranges a map claims: present from now on, and, with chunk digests, to be
    /// checked before they are served. Bytes the digest went past may differ from what it hashed.
    private func learn(_ s: inout State, _ recorded: RangeSet) {
        let added = s.ledger.learn(recorded)
        if let first = added.map(\.lowerBound).min() { s.digest.invalidate(from: first) }
    }

    /// Adopts a blob when there is one that may be trusted; whether the phase changed.
    private func adoptBlob(_ s: inout State) -> Bool {
        do {
            guard let blob = try store.adopt(content) else { return false }
            complete(&s, blob: blob)
        } catch {
            // A blob of another size that is this content: the manifest entry is wrong.
            let coded = (error as? any CodedError) ?? BlobStore.Mismatch(path: content.path, message: "\(error)")
            s.phase = .corrupt
            s.corrupt = (coded, Date().addingTimeInterval(settings.corruptCoolDown))
            try? state?.setFileState(.corrupt, sha256: content.sha256, size: content.size, detail: "\(coded)")
        }
        return true
    }

    /// Gives the lock back when nothing is running or waiting, so another process can take over.
    func releaseIfIdle() {
        // Not while verifying: every byte is here and the owner must digest and commit it.
        func idle(_ s: State) -> Bool {
            s.ledger.inFlight.isEmpty && s.waiters == 0 && !s.hashing && !s.hashQueued
                && (s.phase == .partial || s.phase == .corrupt)
        }
        guard let lock = guarded.withLock({ s in idle(s) ? s.ownership : nil }) else { return }
        persist()
        guarded.withLock { s in
            guard idle(s), s.ownership === lock else { return }
            s.partial?.closeMap()   // the file stays open for reads; the map is the next owner's
            lock.release()
            s.ownership = nil
        }
    }

    /// Picks up what is on disk: a verified blob, or ranges another process recorded.
    func refreshFromDisk(_ s: inout State) {
        if s.phase != .complete && s.phase != .corrupt && adoptBlob(&s) { return }
        guard s.phase == .partial, content.size > 0,
              let (partial, recorded) = PartialFile.openToFollow(content, root: root, policy: policy) else { return }
        if let known = s.partial, known.identity != partial.identity {
            resetGeneration(&s)
        }
        if s.partial == nil { s.partial = partial }
        learn(&s, recorded)
    }
}
