import Foundation
import Glibc
import Logging
import Synchronization
import WanCore
import WanSystem

/// How a mount outlives its daemon: it can be taken over (`-o takeover`), and a holder
/// process starts a new daemon if this one dies (``CrashRecovery``).
extension Mounter {
    /// What this daemon runs beside its session so the mount can change hands: the takeover
    /// listener, the holder, and the saved connection.
    final class Continuity: Sendable {
        private struct State {
            var listener: TakeoverListener?
            var holderPipe: Int32?
            var inSystemdStore = false
            /// Set while the connection is being handed over (and after): what is saved for a
            /// crash is the new daemon's to write.
            var handingOver = false
        }
        private let state = Mutex(State())

        func started(listener: TakeoverListener?, holder pipe: Int32?, inSystemdStore: Bool) {
            state.withLock {
                $0.listener = listener
                $0.holderPipe = pipe
                $0.inSystemdStore = inSystemdStore
            }
        }

        /// The daemon ends on purpose (unmounted, or handed over): the listener stops (its
        /// socket file stays when a newer daemon's replaced it), the holder is told goodbye,
        /// and systemd lets go of the connection (unless the new daemon carries it on).
        func end(handedOver: Bool) {
            let (listener, pipe, stored) = state.withLock { ($0.listener, $0.holderPipe, $0.inSystemdStore) }
            listener?.stop(removeFile: !handedOver)
            if let pipe { CrashRecovery.sayGoodbye(pipe) }
            if stored && !handedOver { SystemdNotify.send("FDSTOREREMOVE=1\nFDNAME=\(CrashRecovery.storeName)") }
        }

        func handingOver(_ value: Bool) { state.withLock { $0.handingOver = value } }

        /// Saves what a daemon carrying on after a crash needs (once serving, each reload).
        func save(_ session: FuseSession, _ fs: WanFileSystem) {
            guard let record = session.negotiated, !state.withLock({ $0.handingOver }) else { return }
            let saved = CrashRecovery.SavedConnection(record: record, table: fs.table.snapshot, epoch: fs.epoch)
            do {
                try CrashRecovery.save(saved, modelsRoot: fs.engine.resolver.modelsRoot, mountpoint: session.mountpoint)
            } catch {
                Logger(label: "wanfs").warning("could not save the connection for crash recovery: \(error)")
            }
        }
    }

    // MARK: - Starting to serve

    /// Takes the connection of the daemon serving the mount: it parks, hands over its
    /// /dev/fuse descriptor, its tree and its open handles; this daemon's manifest is shown
    /// over that tree (as a reload would).
    func adopt(from takeover: TakeoverClient, fs: WanFileSystem) throws -> FuseSession {
        // The running daemon waits for the requests it is serving; one read waits at most read_timeout.
        let (descriptor, handover) = try takeover.takeOver(timeout: config.readTimeout + 30)
        do {
            pendingInvalidations.withLock { $0 = nil }
            let changes = try fs.adopt(handover.filesystem)
            let session = try adoptedSession(descriptor, handover.record, fs: fs)
            pendingInvalidations.withLock { $0 = changes }
            return session
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// Carries on the connection a holder (or systemd) kept after its daemon died. The next
    /// handle epoch is saved before anything is served.
    func recover(_ recovery: (descriptor: Int32, saved: CrashRecovery.SavedConnection), fs: WanFileSystem) throws -> FuseSession {
        var saved = recovery.saved
        saved.epoch += 1
        try CrashRecovery.save(saved, modelsRoot: options.modelsRoot, mountpoint: options.mountpoint)
        let changes = try fs.recoverAfterCrash(table: saved.table, epoch: saved.epoch,
                                               backingIDs: CrashRecovery.loadBackingIDs(modelsRoot: options.modelsRoot, mountpoint: options.mountpoint))
        let session = try adoptedSession(recovery.descriptor, saved.record, fs: fs)
        pendingInvalidations.withLock { $0 = changes }
        return session
    }

    /// Keeps the backing ids saved as they change (for a daemon carrying on after a crash).
    func saveBackingIDs(of fs: WanFileSystem) {
        let (root, mountpoint, logger) = (options.modelsRoot, options.mountpoint, logger)
        fs.passthrough.onBackingChange { ids in
            do { try CrashRecovery.saveBackingIDs(ids, modelsRoot: root, mountpoint: mountpoint) } catch {
                logger.warning("could not save the passthrough backing ids for crash recovery: \(error)")
            }
        }
    }

    private func adoptedSession(_ descriptor: Int32, _ record: FuseChannel.Record, fs: WanFileSystem) throws -> FuseSession {
        let session = try FuseSession(fs: fs, mountpoint: options.mountpoint, options: options.allowOther ? ["allow_other"] : [],
                                      maxRead: options.maxRead, debug: options.debug, logger: logger, adopting: (descriptor, record))
        try session.mount()
        return session
    }

    /// Waits until the session serves; returns nil, or why it does not. A new mount serves
    /// once the kernel answers for the mountpoint with our root; a connection taken over or
    /// recovered once its replayed INIT is answered (then the previous daemon is told, or the
    /// kernel is asked to send again what the dead one never answered).
    func awaitServing(_ session: FuseSession, _ fs: WanFileSystem) -> String? {
        let deadline = Date().addingTimeInterval(20)
        if takeover == nil && recovery == nil {
            // (Nothing may touch the mountpoint before the session loop runs: the kernel holds
            // every call until FUSE INIT is answered.)
            while Date() < deadline {
                if let root = try? FileSystem.info(options.mountpoint), root.inode == 1 {
                    let kilobytes = Mounter.kernelReadahead(maxRead: options.maxRead, faultsOnly: fs.opensPartialFilesDirect && fs.servesFromBlobs)
                    Mounter.raiseKernelReadahead(root, kilobytes: kilobytes)
                    logger.info("mounted \(options.modelsRoot) at \(options.mountpoint) (\(registry.listModels().count) models, verify=\(options.verify.rawValue))")
                    return nil
                }
                Thread.sleep(forTimeInterval: 0.02)
            }
            return "the mount at \(options.mountpoint) did not answer within 20 s"
        }
        while session.negotiated == nil {
            guard Date() < deadline else {
                // Not ours to unmount: the previous daemon serves again, or the holder's next try.
                session.abandon()
                return "the connection of \(options.mountpoint) did not start within 20 s"
            }
            Thread.sleep(forTimeInterval: 0.002)
        }
        if takeover == nil {
            session.confirmOwnership()
            if session.resendUnanswered() {
                logger.notice("carried on \(options.mountpoint) after its daemon died; the kernel sends again what it never answered")
            } else {
                logger.warning("carried on \(options.mountpoint) after its daemon died, but this kernel cannot send again what the dead daemon read (FUSE_NOTIFY_RESEND needs Linux 6.9): those calls wait until interrupted")
            }
        }
        return nil
    }

    /// Once serving: the connection is saved, a holder keeps a copy of it, the mount answers
    /// takeovers, and systemd hears it is ready.
    func carryOn(_ session: FuseSession, _ fs: WanFileSystem, _ continuity: Continuity) {
        continuity.save(session, fs)
        var holderPipe: Int32?
        // Under systemd (the unit runs the daemon in the foreground, and its reload a takeover)
        // the service's descriptor store keeps the connection
        // and Restart= starts the next daemon; elsewhere a holder process does both. (A
        // daemon that took over or was restarted finds the connection in the store already.)
        let systemd = SystemdNotify.isExpected && (options.foreground || takeover != nil)
        var stored = false
        if systemd {
            stored = takeover != nil || recovery != nil
                || SystemdNotify.send("FDSTORE=1\nFDNAME=\(CrashRecovery.storeName)", descriptor: session.deviceDescriptor)
        } else if let holderExecutable {
            do {
                let recoveries = Int(ProcessInfo.processInfo.environment[CrashRecovery.recoveriesVariable] ?? "0") ?? 0
                let (pid, pipe) = try CrashRecovery.startHolder(executable: holderExecutable, connection: session.deviceDescriptor,
                                                                options: options, recoveries: recovery == nil ? 0 : recoveries)
                fs.holder.store(pid, ordering: .relaxed)
                holderPipe = pipe
            } catch {
                logger.warning("no holder for \(options.mountpoint) (the mount ends if this daemon dies): \(error)")
            }
        }
        var listener: TakeoverListener?
        do {
            listener = try listen(session: session, fs: fs, continuity: continuity)
        } catch {
            logger.warning("this mount cannot be taken over (-o takeover): \(error)")
        }
        continuity.started(listener: listener, holder: holderPipe, inSystemdStore: stored)
        // Only now, with the connection saved and held, is the previous daemon let go.
        if let takeover {
            session.confirmOwnership()
            do { try takeover.confirmServing() } catch {
                logger.warning("could not tell the previous daemon (pid \(takeover.pid)) that this one serves: \(error)")
            }
            logger.notice("took \(options.mountpoint) over from pid \(takeover.pid) (\(registry.listModels().count) models, verify=\(options.verify.rawValue))")
        }
        if let changes = pendingInvalidations.withLock({ $0 }) { session.invalidate(changes) }
        if takeover == nil { SystemdNotify.send("READY=1") }
    }

    /// Answers takeover requests for this mount.
    /// The longest a takeover waits for the requests being served (every other caller waits too).
    static let handoverDrainLimit = 10.0

    private func listen(session: FuseSession, fs: WanFileSystem, continuity: Continuity) throws -> TakeoverListener {
        let readTimeout = config.readTimeout
        let callbacks = TakeoverListener.Callbacks(
            handOver: {
                // Requests being served (cold reads) finish first; every other caller waits
                // meanwhile, so the wait is bounded (then the takeover is refused).
                continuity.handingOver(true)
                guard let descriptor = session.pauseForHandover(timeout: min(readTimeout, Self.handoverDrainLimit)), let record = session.negotiated else {
                    continuity.handingOver(false)
                    return .failure(Takeover.Failure(message: "the mount is still serving a request after \(Int(min(readTimeout, Self.handoverDrainLimit))) s; try again", code: .ioError))
                }
                return .success((descriptor, Takeover.Handover(record: record, filesystem: fs.handoverState)))
            },
            finish: { [self] pid in
                handedOver.store(true, ordering: .releasing)
                // Under systemd (Type=notify) the service goes on with the new daemon as its main process.
                SystemdNotify.send("MAINPID=\(pid)")
                session.finishHandover()
            },
            resume: {
                // The new daemon may have read requests before it went away: the kernel sends
                // them again (nothing of ours is in flight while parked).
                _ = session.resendUnanswered()
                continuity.handingOver(false)
                session.resumeAfterFailedHandover()
            })
        return try TakeoverListener(path: Takeover.socketPath(modelsRoot: options.modelsRoot, mountpoint: options.mountpoint),
                                    options: options.given, logger: logger, callbacks: callbacks)
    }
}
