import Foundation
import Glibc
import Synchronization
import WanCache
import WanCore
import WanSources
import WanSystem

/// The filesystem itself, independent of FUSE: a read-only view of the manifest whose files
/// are fetched on demand through the cache engine. The FUSE adapter (``FuseSession``) only
/// translates kernel requests to these calls; tests call them directly.
public final class WanFileSystem: Sendable {
    /// A file's or directory's attributes.
    public struct Attributes: Sendable, Equatable {
        public let ino: UInt64
        public let isDirectory: Bool
        public let size: Int64
        public let links: UInt32
        public let modified: Date
    }

    /// What a read returns: a range of an open file to reply from, or bytes.
    public enum ReadReply: Sendable {
        case file(SharedDescriptor, offset: Int64, count: Int)
        case bytes([UInt8])
    }

    /// What an open returns.
    public struct OpenReply: Sendable {
        public let handle: UInt64
        /// The kernel may keep its page cache across opens (the content is verified and final).
        public let keepCache: Bool
        /// Reads bypass the page cache (generated files whose size is not known up front).
        public let directIO: Bool
        /// Whether the kernel serves this open's reads itself, from the blob (FUSE passthrough).
        public var mode: PassthroughOpens.Mode = .cached
    }

    public struct Settings: Sendable {
        public var maxReadahead: Int64 = 256 << 20
        public var hydrateOnOpen = false
        /// Fetch a model's small files and safetensors headers once a load opens its weights
        /// (``ModelHydration``).
        public var hydrateModels = true
        /// Seconds a read may wait for its bytes before it fails with EIO.
        public var readTimeout: Double = 120
        public var mountpoint = ""
        /// Let the kernel serve complete files straight from their blobs when it can (FUSE
        /// passthrough, libfuse >= 3.17); `passthrough=off` sends every read through us.
        public var passthrough = true
        /// Open files that are still being fetched for direct I/O (`direct_io=auto`): their
        /// reads skip the mount's page cache and are served from the partial file's, so a cold
        /// read fills the page cache once instead of twice (fresh pages are the dearest memory
        /// on a VM); mmap still works. `direct_io=off` caches every open.
        public var directIO = true
        /// Access traces: record cold loads, replay a model's trace when it is loaded cold.
        var traces = TraceRecorder.Settings()
        /// `trace=auto|record|off`, `trace_budget=`: see ``TraceRecorder``.
        public mutating func setTraces(record: Bool, replay: Bool, budget: Int64?) {
            traces.record = record
            traces.replay = replay
            traces.budget = budget
        }
        public init() {}
    }

    struct Handle {
        let ino: UInt64
        let model: String?
        let fetcher: FileFetcher?
        let generated: [UInt8]?
        /// The model variant and the manifest entry of a file's handle (for its access trace:
        /// the fetcher's entry may be another model's with the same content).
        var spec: ModelSpec? = nil
        var file: FileSpec? = nil
        /// Set once this handle was served bytes not yet verified (verify=lazy, no chunk
        /// digests): the fetch generation they came from. If that generation is later found
        /// corrupt, every further read of the handle fails.
        var unverifiedGeneration: Int?
    }

    public let engine: CacheEngine
    public let settings: Settings
    /// The tree and the manifest it was built from; replaced whole by ``reload(_:)``.
    let current: Mutex<(table: InodeTable, registry: ModelRegistry)>
    /// The manifest reloads so far (for `status.json` and `wan models reload`).
    private let reloads = Mutex(ReloadRecord())
    let usage: UsageRecorder
    let traces: TraceRecorder
    let hydration: ModelHydration
    let handles = Mutex<[UInt64: Handle]>([:])
    let nextHandle = Atomic<UInt64>(1)
    private let trackers = Mutex<[UInt64: FileReadahead]>([:])
    /// Which opens the kernel serves from the blob itself (FUSE passthrough).
    public let passthrough = PassthroughOpens()
    /// Set by the FUSE adapter once the kernel agreed to passthrough for this mount.
    public let passthroughNegotiated = Atomic<Bool>(false)
    /// Set by the FUSE adapter once the kernel agreed to mmap of direct-I/O opens.
    public let directIONegotiated = Atomic<Bool>(false)
    /// Set when this daemon carries on a connection whose daemon died: the kernel may hold
    /// handles and passthrough backing files this one never heard of (see ``recoverAfterCrash(_:)``).
    let recovered = Atomic<Bool>(false)
    /// The process that keeps a copy of the connection to start a new daemon if this one dies.
    let holder = Atomic<Int32>(0)
    private let started = Date()
    private let uid = getuid(), gid = getgid()

    public init(engine: CacheEngine, settings: Settings = Settings()) {
        self.engine = engine
        self.settings = settings
        self.current = Mutex((InodeTable(registry: engine.registry), engine.registry))
        self.hydration = ModelHydration(engine: engine)
        self.traces = TraceRecorder(engine: engine, settings: settings.traces)
        self.usage = UsageRecorder(engine: engine, mountpoint: settings.mountpoint)
    }

    /// Flushes usage counts and access traces, ends trace replays, releases model locks (unmount).
    public func shutdown() {
        traces.stop()
        usage.stop()
    }

    /// The tree now (a value: a caller holds one consistent tree for its whole request).
    var table: InodeTable { current.withLock { $0.table } }

    /// The manifest the tree shows now.
    public var registry: ModelRegistry { current.withLock { $0.registry } }

    /// What the kernel must forget after a reload: names detached (gone, or now another
    /// inode), and directories whose listings changed.
    public struct Invalidations: Sendable {
        public let entries: [(parent: UInt64, name: String)]
        public let directories: [UInt64]
    }

    /// Shows `registry` from now on: new models appear, removed ones leave the listings, a
    /// path whose content changed is a new file (a new inode) for new opens. Handles open
    /// under the old tree keep reading their files. The caller has the kernel drop what the
    /// result names, then records the reload (``reloadApplied(models:)``).
    public func reload(_ registry: ModelRegistry) -> Invalidations {
        current.withLock { current in
            let table = InodeTable(registry: registry, reusing: current.table)
            current = (table, registry)
            engine.replaceRegistry(registry)
            return Invalidations(entries: table.detached, directories: table.changedDirectories)
        }
    }

    /// Records a reload as applied (`status.json`): once the kernel dropped what it detached,
    /// so a `wan models reload` that sees it finds the new tree.
    public func reloadApplied(models count: Int) {
        reloads.withLock { $0.recordApplied(models: count) }
    }

    /// Records a reload the daemon refused (the manifest did not load): the mount keeps the
    /// manifest it has, and `status.json` says why.
    public func reloadRefused(_ reason: String) {
        reloads.withLock { $0.recordRefused(reason) }
    }

    /// The inodes of every file with this content (several models or variants may share it).
    public func inodes(ofContent sha256: String) -> [UInt64] {
        table.nodes.compactMap { node in
            if case .file(_, _, let file) = node.kind, file.sha256 == sha256 { return node.ino }
            return nil
        }
    }

    public var owner: (uid: UInt32, gid: UInt32) { (uid, gid) }

    // MARK: - Names and attributes (no network)

    public func lookup(parent: UInt64, name: String) throws(FSError) -> Attributes {
        let table = self.table
        guard let directory = table.node(parent) else { throw .notFound }
        guard case .directory = directory.kind else { throw .notDirectory }
        guard let node = table.child(of: parent, named: name) else { throw .notFound }
        return attributes(of: node, in: table)
    }

    public func attributes(_ ino: UInt64) throws(FSError) -> Attributes {
        let table = self.table
        guard let node = table.node(ino) else { throw .notFound }
        return attributes(of: node, in: table)
    }

    private func attributes(of node: InodeTable.Node, in table: InodeTable) -> Attributes {
        switch node.kind {
        case .directory:
            let subdirectories = node.children.values.filter { if case .directory = table.node($0)?.kind { true } else { false } }.count
            return Attributes(ino: node.ino, isDirectory: true, size: 4096, links: UInt32(2 + subdirectories), modified: started)
        case .file(_, _, let file):
            return Attributes(ino: node.ino, isDirectory: false, size: file.size, links: 1, modified: started)
        case .control:
            return Attributes(ino: node.ino, isDirectory: false, size: 0, links: 1, modified: started)
        case .text(let content):
            return Attributes(ino: node.ino, isDirectory: false, size: Int64(content.utf8.count), links: 1, modified: started)
        }
    }

    /// A directory's entries (without `.` and `..`), sorted.
    public func list(_ ino: UInt64) throws(FSError) -> [(name: String, attributes: Attributes)] {
        let table = self.table
        guard let node = table.node(ino) else { throw .notFound }
        guard case .directory = node.kind else { throw .notDirectory }
        return node.order.compactMap { name in node.children[name].flatMap(table.node).map { (name, attributes(of: $0, in: table)) } }
    }

    // MARK: - Open, read, release

    /// Opens a file. `register` registers a blob's descriptor with the kernel as a backing
    /// file (FUSE passthrough) and returns its id, nil when refused; without it (or with
    /// `passthrough=off`) every read comes to ``read(handle:offset:size:)``.
    public func open(_ ino: UInt64, flags: Int32, register: ((Int32) -> Int32?)? = nil) throws(FSError) -> OpenReply {
        guard let node = table.node(ino) else { throw .notFound }
        if flags & O_ACCMODE != O_RDONLY || flags & (O_TRUNC | O_CREAT) != 0 { throw .readOnly }
        let id = nextHandle.add(1, ordering: .relaxed).oldValue
        switch node.kind {
        case .directory:
            throw .isDirectory
        case .control(let file):
            handles.withLock { $0[id] = Handle(ino: ino, model: nil, fetcher: nil, generated: generate(file)) }
            return OpenReply(handle: id, keepCache: false, directIO: true)
        case .text(let content):
            handles.withLock { $0[id] = Handle(ino: ino, model: nil, fetcher: nil, generated: Array(content.utf8)) }
            return OpenReply(handle: id, keepCache: true, directIO: false)
        case .file(let model, let spec, let file):
            let fetcher: FileFetcher
            do { fetcher = try engine.fetcher(for: file, of: spec) } catch { throw .io("\(file.path): \(error)") }
            if let reason = fetcher.unavailableReason { throw .io("\(file.path): \(reason)") }
            var snapshot = fetcher.snapshot
            if file.size == 0 && snapshot.phase != .complete {
                // Nothing to read, so no read would ever complete it: do it here (no network).
                do { _ = try fetcher.requireComplete(timeout: settings.readTimeout) } catch { throw .io("\(file.path): \(error)") }
                snapshot = fetcher.snapshot
            }
            handles.withLock { $0[id] = Handle(ino: ino, model: model, fetcher: fetcher, generated: nil, spec: spec, file: file) }
            usage.opened(model: model)
            if settings.hydrateModels { hydration.opened(file, of: spec, key: model) }
            if settings.hydrateOnOpen && snapshot.phase == .partial {
                fetcher.prefetch(0..<file.size, priority: .background)
            }
            let complete = snapshot.phase == .complete
            var reply = OpenReply(handle: id, keepCache: complete, directIO: !complete && opensPartialFilesDirect)
            if let register, settings.passthrough {
                // The blob of a complete, verified file; nil while it is being fetched.
                let blob = snapshot.phase == .complete ? fetcher.verifiedBlob : nil
                reply.mode = withExtendedLifetime(blob) {
                    passthrough.open(handle: id, ino: ino, backing: blob?.descriptor.rawValue, register: register)
                }
            }
            return reply
        }
    }

    /// Reads `size` bytes at `offset`, waiting only for the blocks that cover them. Streams
    /// get readahead. Any failure (source outage past its timeout and retries, bytes that fail
    /// verification, a file found corrupt after some of it was served) is EIO, never wrong bytes.
    public func read(handle id: UInt64, ino: UInt64 = 0, offset: Int64, size: Int) throws(FSError) -> ReadReply {
        var known = handles.withLock { $0[id] }
        if known == nil { known = try recreatedHandle(id, ino: ino) }
        // A handle of another file never serves this one's bytes.
        guard let handle = known, ino == 0 || handle.ino == ino else { throw .badHandle }
        if let generated = handle.generated {
            let start = min(Int(offset), generated.count)
            return .bytes(Array(generated[start..<min(generated.count, start + size)]))
        }
        guard let model = handle.model else { throw .badHandle }
        guard let fetcher = handle.fetcher else { throw .io("inode \(handle.ino): its file could not be prepared when this daemon took the mount over") }
        let fileSize = fetcher.content.size
        let end = min(fileSize, offset + Int64(size))
        guard offset < end else { return .bytes([]) }
        let snapshot = fetcher.snapshot
        if let served = handle.unverifiedGeneration, snapshot.generation != served {
            // Bytes this handle was served failed verification afterwards.
            throw .io("\(fetcher.content.path) was found corrupt after this handle read unverified bytes of it")
        }
        let readahead = snapshot.phase == .complete ? nil : tracker(handle.ino, path: fetcher.content.path)
        if let readahead {
            let window = fetcher.readaheadWindow(cap: settings.maxReadahead)
            for ahead in readahead.access(offset: offset, length: end - offset, fileSize: fileSize, maxWindow: window) {
                fetcher.prefetch(ahead, priority: .readahead)
            }
        }
        // Recorded (and a replay started) before the wait: the replay runs while it waits.
        if snapshot.phase != .complete, let spec = handle.spec, let file = handle.file {
            traces.read(offset..<end, of: file, in: spec, key: model)
        }
        do {
            let started = ContinuousClock.now
            let cached = fetcher.isPresent(offset..<end)
            let file = try fetcher.prepareRead(offset..<end, priority: .demand, timeout: settings.readTimeout)
            let waited = ContinuousClock.now - started
            usage.served(bytes: end - offset, fromCache: cached,
                         seconds: Double(waited.components.seconds) + Double(waited.components.attoseconds) / 1e18)
            // Only the first read of a handle, and only without chunk digests, needs to look.
            if handle.unverifiedGeneration == nil && fetcher.content.chunks == nil {
                let after = fetcher.snapshot
                if after.phase != .complete { handles.withLock { $0[id]?.unverifiedGeneration = after.generation } }
            }
            usage.read(model: model, bytes: end - offset)
            // After the first reads of a .safetensors file its header is here: plan by tensor
            // (parsed on a thread of its own: this reply waits for none of it).
            readahead?.learnLayout(from: fetcher, timeout: 1, minimumStep: Self.tensorStep, inBackground: true)
            return .file(file, offset: offset, count: Int(end - offset))
        } catch {
            throw .io("\(fetcher.content.path) bytes \(offset)..<\(end): \(error)")
        }
    }

    /// Forgets a handle. Returns the backing id the adapter must unregister from the kernel
    /// when this was the last passthrough open of its file.
    @discardableResult
    public func release(handle id: UInt64) -> Int32? {
        guard let handle = handles.withLock({ $0.removeValue(forKey: id) }) else { return nil }
        if let model = handle.model { usage.closed(model: model) }
        return passthrough.release(handle: id)
    }

    /// Whether files still being fetched are opened for direct I/O (see ``Settings/directIO``).
    public var opensPartialFilesDirect: Bool {
        settings.directIO && directIONegotiated.load(ordering: .relaxed)
    }

    /// Whether complete files are served by the kernel from their blobs on this mount.
    public var servesFromBlobs: Bool {
        settings.passthrough && passthroughNegotiated.load(ordering: .relaxed) && !passthrough.refused
    }

    /// The least a first read of a tensor fetches ahead (``TensorReadahead``).
    static let tensorStep: Int64 = 16 << 20

    private func tracker(_ ino: UInt64, path: String) -> FileReadahead {
        trackers.withLock { table in
            if let tracker = table[ino] { return tracker }
            let tracker = FileReadahead(path: path)
            table[ino] = tracker
            return tracker
        }
    }

    // MARK: - Extended attributes

    public static let attributeNames = ["user.wan.state", "user.wan.bytes_present", "user.wan.sha256", "user.wan.source"]

    public func extendedAttributeNames(_ ino: UInt64) throws(FSError) -> [String] {
        let table = self.table
        guard let node = table.node(ino) else { throw .notFound }
        switch node.kind {
        case .file: return Self.attributeNames
        case .directory where table.isModelRoot(ino): return ["user.wan.state", "user.wan.bytes_present"]
        default: return []
        }
    }

    /// `user.wan.state` (one of the five states), `user.wan.bytes_present` (decimal),
    /// `user.wan.sha256` (64 hex), `user.wan.source` (the URL that served it, no credentials).
    public func extendedAttribute(_ ino: UInt64, name: String) throws(FSError) -> String {
        guard let node = table.node(ino) else { throw .notFound }
        guard try extendedAttributeNames(ino).contains(name) else { throw .noAttribute }
        switch node.kind {
        case .file(_, let spec, let file):
            let status = fileStatus(file, spec: spec)
            switch name {
            case "user.wan.state": return status.state.rawValue
            case "user.wan.bytes_present": return String(status.bytesPresent)
            case "user.wan.sha256": return file.sha256
            default: return source(of: file) ?? ""
            }
        default:
            guard let spec = node.model?.spec, let status = try? engine.status(spec) else { throw .io("status unavailable") }
            return name == "user.wan.state" ? status.state.rawValue : String(status.bytesPresent)
        }
    }

    private func fileStatus(_ file: FileSpec, spec: ModelSpec) -> FileStatus {
        let status = try? engine.status(spec.with(variant: spec.variant, files: [file]))
        return status?.files.first ?? FileStatus(path: file.path, size: file.size, sha256: file.sha256, optional: file.optional,
                                                 state: .notPresent, bytesPresent: 0)
    }

    private func source(of file: FileSpec) -> String? {
        if let live = engine.liveFetcher(file)?.snapshot.lastSource { return live }
        guard let state = (try? engine.state(create: false)) ?? nil, let history = try? state.downloads() else { return nil }
        return history.first { $0.sha256 == file.sha256 && $0.outcome == "completed" }?.source
    }

    // MARK: - Generated files

    var description: MountDescription {
        MountDescription(modelsRoot: engine.resolver.modelsRoot, manifest: registry.manifestPath,
                         mountpoint: settings.mountpoint, pid: getpid(), verify: engine.settings.verifyMode.rawValue, started: started,
                         passthrough: servesFromBlobs, directIO: opensPartialFilesDirect, reloads: reloads.withLock { $0 },
                         holder: holder.load(ordering: .relaxed) > 0 ? holder.load(ordering: .relaxed) : nil)
    }

    func generate(_ file: ControlFile) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        let data: Data?
        switch file {
        case .mount:
            data = try? encoder.encode(description)
        case .status:
            var models: [ModelStatus] = []
            for model in registry.manifest.models {
                // The default variant first: a tool asking for a model without a variant takes the first.
                let variants = model.variants.isEmpty ? [nil] : ([model.defaultVariant] + model.variants.filter { $0 != model.defaultVariant }.map(Optional.some))
                for variant in variants {
                    let spec = model.narrowed(to: variant)
                    if var status = try? engine.status(spec) {
                        status.trace = engine.traceSummary(spec)
                        models.append(status)
                    }
                }
            }
            let fetches = engine.liveFetchers().compactMap { fetcher -> MountStatus.Fetch? in
                let s = fetcher.snapshot
                guard s.phase != .complete else { return nil }   // only what is still being fetched or verified
                return MountStatus.Fetch(sha256: fetcher.content.sha256, path: fetcher.content.path, model: fetcher.model,
                                         phase: s.phase.rawValue, bytesPresent: s.bytesPresent, size: s.size,
                                         inFlightBlocks: s.inFlightBlocks, source: s.lastSource)
            }.sorted { $0.path < $1.path }
            data = try? encoder.encode(MountStatus(mount: description, models: models, fetches: fetches))
        }
        return Array((data ?? Data("{}".utf8)) + Data("\n".utf8))
    }

    // MARK: - Filesystem statistics

    /// The space of the filesystem that holds MODELS_ROOT (what the cache can still grow into).
    public func statistics() -> FileSystemSpace? {
        try? FileSystem.space(at: engine.resolver.modelsRoot)
    }

    public var inodeCount: Int { table.nodes.count }
}
