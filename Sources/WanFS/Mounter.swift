import Foundation
import Glibc
import Logging
import Synchronization
import WanCache
import WanCore
import WanSources
import WanSystem

/// One mount from start to clean exit: checks, the cache engine, the filesystem, the FUSE
/// session, readiness, and on SIGTERM or `umount` a shutdown that keeps every byte fetched
/// so far (partial files are synced and their maps recorded).
public final class Mounter: Sendable {
    public let options: MountOptions
    public let config: OrchestratorConfig
    public let registry: ModelRegistry
    let logger: Logger
    /// With `-o takeover`: the conversation with the daemon serving the mount now.
    let takeover: TakeoverClient?
    /// Started by a holder whose daemon died: the connection it kept, and what was saved of it.
    let recovery: (descriptor: Int32, saved: CrashRecovery.SavedConnection)?
    /// The mount.wanfs binary that holds a copy of the connection (nil: no holder, as `wan mount`).
    let holderExecutable: String?

    /// Checks everything that can be checked before mounting; throws clear errors (invalid
    /// options, invalid manifest, missing or busy mountpoint, unusable /dev/fuse).
    /// Creates no threads, so a caller may fork afterwards.
    ///
    /// With `-o takeover` the mountpoint must be served by a wanfs daemon, whose options are
    /// the defaults of these; nothing of it changes here (a bad option or manifest is refused
    /// before it is asked for anything).
    ///
    /// With `holder`, a holder process (that binary, `--hold`) keeps a copy of the connection
    /// and starts a new daemon if this one dies. A daemon so started finds the connection's
    /// descriptor in `WAN_RECOVER_FD`.
    public init(options given: MountOptions, environment: [String: String] = ProcessInfo.processInfo.environment,
                logger: Logger = Logger(label: "wanfs"), holder: String? = nil) throws {
        holderExecutable = holder
        // A connection kept while the previous daemon died: by a holder, or by systemd's
        // descriptor store (Restart= of the unit).
        if let text = environment[CrashRecovery.descriptorVariable] {
            guard let descriptor = Int32(text), descriptor > 2, fcntl(descriptor, F_GETFD) >= 0 else {
                throw OrchestratorError.configInvalid(key: CrashRecovery.descriptorVariable, message: "'\(text)' is not an open descriptor")
            }
            recovery = (descriptor, try CrashRecovery.load(modelsRoot: given.modelsRoot, mountpoint: given.mountpoint))
        } else if let descriptor = SystemdNotify.passedDescriptor(named: CrashRecovery.storeName, environment: environment),
                  CrashRecovery.isMounted(given.mountpoint) {
            recovery = (descriptor, try CrashRecovery.load(modelsRoot: given.modelsRoot, mountpoint: given.mountpoint))
        } else {
            if let stale = SystemdNotify.passedDescriptor(named: CrashRecovery.storeName, environment: environment) {
                // The mount it belonged to is gone: mount afresh, and let systemd drop it.
                close(stale)
                SystemdNotify.send("FDSTOREREMOVE=1\nFDNAME=\(CrashRecovery.storeName)", environment: environment)
            }
            recovery = nil
        }
        var options = given
        if given.takeover {
            let client = try TakeoverClient(modelsRoot: given.modelsRoot, mountpoint: given.mountpoint)
            var arguments = [given.modelsRoot, given.mountpoint]
            for list in [client.options, given.given] where !list.isEmpty { arguments += ["-o", list.joined(separator: ",")] }
            options = try MountOptions.parse(arguments)
            options.takeover = true
            options.foreground = given.foreground
            options.verbose = given.verbose
            takeover = client
        } else {
            takeover = nil
        }
        self.options = options
        self.logger = logger
        config = try options.configuration(environment: environment)
        registry = try ModelRegistry(manifestPath: config.manifestPath)
        if takeover == nil && recovery == nil { try Mounter.checkMountpoint(options.mountpoint) }
        try Mounter.checkFuseDevice()
        try FileSystem.createDirectories(options.modelsRoot)
        try FileSystem.createDirectories(ModelResolver(modelsRoot: options.modelsRoot).stateDir)
    }

    /// The descriptors a forked daemon must keep (the conversation with the daemon it takes over).
    public var descriptorsToKeep: [Int32] { takeover.map { [$0.descriptor] } ?? [] }

    /// Where a daemonized mount writes its log.
    public var logPath: String { ModelResolver(modelsRoot: options.modelsRoot).stateDir + "/mount.log" }

    static func checkMountpoint(_ path: String) throws {
        guard let info = try FileSystem.info(path) else {
            throw OrchestratorError.configInvalid(key: "mountpoint", message: "\(path) does not exist (create the directory first)")
        }
        guard info.kind == .directory else {
            throw OrchestratorError.configInvalid(key: "mountpoint", message: "\(path) is not a directory")
        }
        let parent = PathSplit.parent(path)
        if let above = try FileSystem.info(parent.isEmpty ? "." : parent), above.device != info.device, path != "/" {
            throw OrchestratorError.configInvalid(key: "mountpoint", message: "\(path) is busy: something is already mounted there (umount it first)")
        }
    }

    static func checkFuseDevice() throws {
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            throw OrchestratorError.configInvalid(key: "/dev/fuse", message: "missing: this machine (or container) cannot mount FUSE filesystems")
        }
        guard FileSystem.isAccessible("/dev/fuse", mode: R_OK | W_OK) else {
            throw OrchestratorError.configInvalid(key: "/dev/fuse", message: "not readable and writable by this user (add it to the fuse group, or mount as root)")
        }
    }

    /// Mounts and serves until unmounted. `ready` is called once: with nil when the mount
    /// answers, or with the reason it could not start.
    @discardableResult
    public func run(ready: @escaping @Sendable (String?) -> Void) -> Int32 {
        // SIGHUP reloads the manifest once the mount serves; until its handler is installed it
        // must not end the daemon (its default action).
        signal(SIGHUP, SIG_IGN)
        let engine: CacheEngine
        let fs: WanFileSystem
        let session: FuseSession
        do {
            var settings = CacheEngine.Settings(config)
            settings.verifyMode = options.verify
            engine = try CacheEngine(config: config, registry: registry, settings: settings)
            // Best effort: what fails here fails again, with its error, on the read that needs it.
            do { try engine.warmUp() } catch { logger.warning("could not prepare the cache before the first read: \(error)") }
            engine.warmConnections()
            var fsSettings = WanFileSystem.Settings()
            fsSettings.maxReadahead = options.maxReadahead
            fsSettings.hydrateOnOpen = options.hydrateOnOpen
            fsSettings.hydrateModels = options.hydrateModels
            // Every read is bounded, whatever the retries (`read_timeout`, default 60 s).
            fsSettings.readTimeout = config.readTimeout
            fsSettings.mountpoint = options.mountpoint
            fsSettings.passthrough = options.passthrough
            fsSettings.directIO = options.directIO
            fsSettings.setTraces(record: options.traceRecord, replay: options.traceReplay, budget: options.traceBudget)
            fs = WanFileSystem(engine: engine, settings: fsSettings)
            saveBackingIDs(of: fs)
            if let takeover {
                session = try adopt(from: takeover, fs: fs)
            } else if let recovery {
                session = try recover(recovery, fs: fs)
            } else {
                session = try FuseSession(fs: fs, mountpoint: options.mountpoint, options: options.allowOther ? ["allow_other"] : [],
                                          maxRead: options.maxRead, debug: options.debug, logger: logger)
                try session.mount()
            }
        } catch {
            ready("\(error)")
            return 1
        }
        let continuity = Continuity()
        Thread.detachNewThread { [self] in
            let failure = awaitServing(session, fs)
            if failure == nil { carryOn(session, fs, continuity) }
            ready(failure)
        }
        let gc = startGarbageCollection(engine)
        let reloads = reloadOnHangup(fs, session, continuity)
        let status = session.run()
        let gone = handedOver.load(ordering: .acquiring)
        continuity.end(handedOver: gone)
        reloads.cancel()
        gc?.cancel()
        fs.shutdown()
        engine.shutdown()
        if gone {
            // Digests in progress start again in the new daemon, which now owns the files.
            logger.info("handed \(options.mountpoint) over to the new daemon; exiting without unmounting")
            return 0
        }
        // Files whose last bytes arrived are being verified: let them reach `.blobs/` (a
        // digest cut short is started again by the next mount, from the start of the file).
        if !engine.hashWorkers.waitUntilIdle(timeout: 60) {
            logger.warning("unmounting with whole-file digests still running; the next mount verifies those files again")
        }
        logger.info("unmounted \(options.mountpoint)")
        return status
    }

    /// Set once another daemon serves this mount (this one then exits without unmounting).
    let handedOver = Atomic<Bool>(false)

    /// What the kernel must forget of the previous daemon's tree, once this one serves.
    let pendingInvalidations = Mutex<WanFileSystem.Invalidations?>(nil)

    /// SIGHUP (`wan models reload`) reads the manifest again and shows it: new models appear,
    /// removed ones leave the listings (open files keep working), changed files are new files
    /// for new opens. A manifest that does not load is refused: logged, recorded in
    /// `status.json`, and the mount keeps the one it has.
    private func reloadOnHangup(_ fs: WanFileSystem, _ session: FuseSession, _ continuity: Continuity) -> any DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "wan-reload"))
        let (path, logger) = (config.manifestPath, self.logger)
        source.setEventHandler { [self] in
            do {
                let registry = try ModelRegistry(manifestPath: path)
                let before = Set(fs.registry.listModels())
                let changes = fs.reload(registry)
                session.invalidate(changes)
                let after = Set(registry.listModels())
                fs.reloadApplied(models: after.count)
                continuity.save(session, fs)
                logger.info("manifest reloaded from \(path): \(after.count) models (\(after.subtracting(before).count) added, \(before.subtracting(after).count) removed, \(changes.entries.count) names detached)")
            } catch {
                fs.reloadRefused((error as? any CodedError).map { "[\($0.code.rawValue)] \($0)" } ?? "\(error)")
                logger.error("manifest reload refused, the mount keeps the manifest it has: \(error)")
            }
        }
        source.resume()
        return source
    }

    /// With `cache_max`, keeps MODELS_ROOT under it (LRU, pins and open models respected): at
    /// the start, whenever the cache reaches it (looked at every minute), and every 10 minutes.
    private func startGarbageCollection(_ engine: CacheEngine) -> CancellationToken? {
        guard let limit = options.cacheMax else { return nil }
        let maxModelAge = engine.config.maxModelAge
        let schedule = GCSchedule(engine: engine, startedAt: .distantPast) {
            GCSchedule.Policy(limit: limit, maxModelAge: maxModelAge, period: 600)
        }
        let logger = self.logger
        return schedule.start(every: 60) { outcome in
            switch outcome {
            case .success(let result):
                if !result.modelsRemoved.isEmpty {
                    logger.info("gc: removed \(result.modelsRemoved.joined(separator: ", ")), reclaimed \(result.bytesReclaimed) bytes")
                }
                for error in result.errors { logger.warning("gc: \(error)") }
            case .failure(let error):
                logger.error("gc (cache_max): \(error)")
            }
        }
    }

    /// The kernel's readahead for the mount, in KiB. It reads ahead at most 128 KiB for FUSE
    /// unless the mount's backing device info says more, and an mmap page fault reads half of
    /// it on each side of the faulting page (our own readahead does the rest).
    /// - With files still being fetched opened for direct I/O and complete ones read from their
    ///   blobs (`faultsOnly`), mostly the page faults of files still being fetched use it (and
    ///   complete files whose passthrough open the kernel refused): 256 KiB.
    ///   A fault at a small tensor that a partial load reads (a bias) then reads 128 KiB into
    ///   the large one after it that the load skips, almost always inside the chunk the small
    ///   one is in. With max_read (992 KiB) it read into the next chunk, and a half load of
    ///   Wan2.1's transformer fetched 0.65× of the model where its chunks need 0.59× (measured).
    /// - Otherwise sequential readers go through the page cache: max_read, so they send
    ///   max_read requests.
    static func kernelReadahead(maxRead: Int, faultsOnly: Bool) -> Int {
        faultsOnly ? min(256, maxRead / 1024) : maxRead / 1024
    }

    /// Sets the kernel's readahead for the mount (as root; a user's mount keeps the kernel's).
    static func raiseKernelReadahead(_ info: FileInfo, kilobytes: Int) {
        let major = (info.device >> 8) & 0xfff, minor = (info.device & 0xff) | ((info.device >> 12) & 0xfff00)
        let path = "/sys/class/bdi/\(major):\(minor)/read_ahead_kb"
        try? "\(kilobytes)\n".write(toFile: path, atomically: false, encoding: .utf8)
    }
}
