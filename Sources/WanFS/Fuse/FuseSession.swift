import CFuse
import Foundation
import Synchronization
import Glibc
import Logging
import WanSystem

/// The thin FUSE adapter: libfuse's low-level API on one side, ``WanFileSystem`` on the
/// other. Every callback translates a kernel request into one filesystem call and its
/// result (or errno) into one reply; nothing else happens here.
///
/// Requests are served by libfuse's multi-threaded loop; a read that waits for the network
/// blocks only its own worker thread.
///
/// `@unchecked Sendable`: it holds libfuse's session pointer, which libfuse itself makes safe
/// to use from its worker threads; whether it is mounted is behind a `Mutex`.
public final class FuseSession: @unchecked Sendable {
    /// What travels through `fuse_req_userdata`.
    final class Context: Sendable {
        let fs: WanFileSystem
        let maxRead: Int
        let logger: Logger
        let channel: FuseChannel
        /// The connection this session took over: what the first daemon agreed with the kernel.
        let adopted: FuseChannel.Record?
        /// What this session agreed with the kernel (or carried on), once INIT was answered.
        let negotiated = Mutex<FuseChannel.Record?>(nil)
        let onNegotiated: @Sendable (FuseChannel.Record) -> Void
        init(fs: WanFileSystem, maxRead: Int, logger: Logger, channel: FuseChannel, adopted: FuseChannel.Record?,
             onNegotiated: @escaping @Sendable (FuseChannel.Record) -> Void) {
            self.fs = fs
            self.maxRead = maxRead
            self.logger = logger
            self.channel = channel
            self.adopted = adopted
            self.onNegotiated = onNegotiated
        }
    }

    public let mountpoint: String
    private let context: Context
    private let session: OpaquePointer?
    /// Whether mounted: unmounting and invalidating the kernel's cache take it, so neither
    /// uses a session the other is tearing down.
    private let mounted = Mutex(false)
    private var signalSources: [any DispatchSourceSignal] = []
    /// The descriptor of a connection taken over (nil for one this session mounted).
    private let adoptedDescriptor: Int32?

    /// Seconds the kernel may cache names and attributes (the tree is static for the mount's life).
    static let cacheSeconds = 3600.0

    /// Creates the session (nothing is mounted yet).
    ///
    /// - Parameters:
    ///   - options: kernel/libfuse mount options (`allow_other`, ...); `ro`, `fsname`,
    ///     `subtype`, `default_permissions` and `max_read` are always added.
    ///   - adopting: a connection another daemon handed over (its /dev/fuse descriptor and
    ///     what it agreed with the kernel): the session serves it instead of mounting.
    ///   - onNegotiated: called once INIT is answered, with what a daemon taking over needs.
    init(fs: WanFileSystem, mountpoint: String, options: [String] = [], maxRead: Int = 1 << 20, debug: Bool = false,
                logger: Logger = Logger(label: "wanfs"), adopting: (descriptor: Int32, record: FuseChannel.Record)? = nil,
                onNegotiated: @escaping @Sendable (FuseChannel.Record) -> Void = { _ in }) throws {
        self.mountpoint = mountpoint
        let maxRead = adopting?.record.maxRead ?? maxRead
        let channel = adopting.map { FuseChannel(replaying: $0.record.initRequest) } ?? FuseChannel()
        self.context = Context(fs: fs, maxRead: maxRead, logger: logger, channel: channel, adopted: adopting?.record, onNegotiated: onNegotiated)
        self.adoptedDescriptor = adopting?.descriptor
        let mountOptions = ["ro", "fsname=wanfs", "subtype=wanfs", "default_permissions", "max_read=\(maxRead)"] + options
        var arguments = ["mount.wanfs", "-o", mountOptions.joined(separator: ",")]
        if debug { arguments.append("-d") }
        var cStrings = arguments.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        var args = cStrings.withUnsafeMutableBufferPointer { wan_fuse_args(Int32(arguments.count), $0.baseAddress) }
        var operations = FuseSession.operations()
        session = wan_fuse_session_new(&args, &operations, MemoryLayout<fuse_lowlevel_ops>.size,
                                   Unmanaged.passUnretained(context).toOpaque())
        fuse_opt_free_args(&args)
        guard session != nil else {
            throw FSError(EINVAL, "libfuse refused the session options \(mountOptions.joined(separator: ","))")
        }
        // Bytes served (verify=lazy, no chunk digests) and then found bad must leave the
        // kernel's page cache too. Asynchronous: the discovery may happen on a thread that is
        // serving a read of that very inode, and the kernel would wait for it.
        fs.engine.onDiscardedContent { [weak self, weak fs] sha256 in
            guard let self, let inodes = fs?.inodes(ofContent: sha256), !inodes.isEmpty else { return }
            DispatchQueue.global().async { self.invalidateKernelCache(inodes) }
        }
    }

    /// Drops the kernel's cached pages of these inodes (while mounted).
    private func invalidateKernelCache(_ inodes: [UInt64]) {
        mounted.withLock { mounted in
            guard mounted, let session else { return }
            for ino in inodes { _ = fuse_lowlevel_notify_inval_inode(session, fuse_ino_t(ino), 0, 0) }
        }
    }

    /// Drops what the kernel cached of a tree a manifest reload changed: the entries of names
    /// detached, and the listings and attributes of directories whose names changed, so the
    /// next lookup or listing asks the filesystem.
    public func invalidate(_ changes: WanFileSystem.Invalidations) {
        mounted.withLock { mounted in
            guard mounted, let session else { return }
            for entry in changes.entries {
                _ = entry.name.withCString { fuse_lowlevel_notify_inval_entry(session, fuse_ino_t(entry.parent), $0, entry.name.utf8.count) }
            }
            for directory in Set(changes.directories + changes.entries.map(\.parent)) {
                _ = fuse_lowlevel_notify_inval_inode(session, fuse_ino_t(directory), 0, 0)
            }
        }
    }

    deinit {
        if let session {
            if mounted.withLock({ $0 }) { unmount() }
            fuse_session_destroy(session)
        }
    }

    /// Mounts at `mountpoint` (or serves the connection taken over) and installs the
    /// SIGTERM/SIGINT handlers that end the loop.
    public func mount() throws {
        guard let session else { return }
        var io = Self.customIO()   // libfuse keeps a copy
        if let adoptedDescriptor {
            guard wan_fuse_session_custom_io(session, &io, adoptedDescriptor) == 0 else {
                throw FSError(EIO, "libfuse refused the FUSE connection handed over")
            }
        } else {
            guard fuse_session_mount(session, mountpoint) == 0 else {
                throw FSError(EIO, "cannot mount at \(mountpoint) (is /dev/fuse usable, and the mountpoint an empty directory not already mounted?)")
            }
            guard wan_fuse_session_custom_io(session, &io, fuse_session_fd(session)) == 0 else {
                fuse_session_unmount(session)
                throw FSError(EIO, "libfuse refused its own FUSE connection for custom I/O")
            }
        }
        mounted.withLock { $0 = true }
        stopOnSignals([SIGTERM, SIGINT])   // SIGHUP reloads the manifest (``Mounter``)
    }

    /// libfuse reads and writes the device through ``FuseChannel`` (its userdata is ours).
    private static func customIO() -> fuse_custom_io {
        var io = fuse_custom_io()
        io.read = { fd, buffer, length, userdata in
            Unmanaged<Context>.fromOpaque(userdata!).takeUnretainedValue().channel.read(fd, buffer, length)
        }
        io.writev = { fd, vectors, count, userdata in
            Unmanaged<Context>.fromOpaque(userdata!).takeUnretainedValue().channel.writev(fd, vectors, count)
        }
        io.splice_send = { input, inputOffset, output, outputOffset, length, flags, userdata in
            Unmanaged<Context>.fromOpaque(userdata!).takeUnretainedValue().channel.splice(input, inputOffset, output, outputOffset, length, flags)
        }
        return io
    }

    // MARK: - Handing the connection to another daemon

    /// The /dev/fuse descriptor (-1 before ``mount()``).
    var deviceDescriptor: Int32 { session.map { fuse_session_fd($0) } ?? -1 }

    /// What the session agreed with the kernel (nil until INIT was answered, and for a
    /// connection taken over until libfuse accepted the replayed INIT).
    var negotiated: FuseChannel.Record? {
        guard context.channel.initAccepted else { return nil }
        return context.negotiated.withLock { $0 }
    }

    /// A connection taken over is this daemon's to unmount only once it serves it (before, the
    /// previous daemon may still serve it, or a failed start must leave it alone).
    private let owned = Atomic<Bool>(false)

    /// This daemon serves the connection it took over (the previous daemon was told, or the
    /// dead one's requests were asked for again).
    func confirmOwnership() { owned.store(true, ordering: .releasing) }

    /// Ends the loop without unmounting (a daemon that took a connection over and could not
    /// start serving it).
    func abandon() { finishHandover() }

    /// Stops serving before the next request and waits until no request is being served.
    /// Returns the device descriptor to hand over, or nil (serving again) when a request was
    /// still being served at the deadline or nothing was negotiated yet.
    public func pauseForHandover(timeout: Double) -> Int32? {
        guard let session, mounted.withLock({ $0 }), negotiated != nil else { return nil }
        guard context.channel.park(timeout: timeout) else {
            context.channel.resume()
            return nil
        }
        return fuse_session_fd(session)
    }

    /// The takeover did not happen: serve again.
    public func resumeAfterFailedHandover() { context.channel.resume() }

    /// The other daemon serves the connection now: this session's loop ends without
    /// unmounting anything.
    public func finishHandover() {
        guard let session else { return }
        mounted.withLock { mounted in
            mounted = false
            fuse_session_exit(session)
        }
        context.channel.letGoOfWorkers()
    }

    /// Asks the kernel to send again what a daemon that died had read and not answered.
    public func resendUnanswered() -> Bool {
        guard let session else { return false }
        return FuseChannel.resendUnanswered(fuse_session_fd(session))
    }

    /// SIGTERM and SIGINT unmount, which ends the loop. (libfuse's own handlers only
    /// interrupt the thread the signal lands on; in a process with other threads, such as the
    /// `wan` CLI's, that is rarely a worker blocked reading /dev/fuse, and the loop would go on.)
    private func stopOnSignals(_ signals: [Int32]) {
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in
                self?.context.logger.info("signal \(number): unmounting \(self?.mountpoint ?? "")")
                self?.unmount()
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Ends the loop from any thread: the kernel drops the connection, every worker returns.
    public func unmount() {
        mounted.withLock { mounted in
            guard mounted, let session else { return }
            fuse_session_exit(session)
            if adoptedDescriptor != nil {
                // libfuse did not mount it: nothing of its to undo.
                if owned.load(ordering: .acquiring) { FuseChannel.detachMount(mountpoint) }
            } else {
                fuse_session_unmount(session)
            }
            mounted = false
        }
    }

    /// Serves requests until the filesystem is unmounted or a signal ends the loop; then unmounts.
    @discardableResult
    public func run(maxThreads: Int = 64) -> Int32 {
        guard let session else { return -1 }
        let config = fuse_loop_cfg_create()
        defer { fuse_loop_cfg_destroy(config) }
        fuse_loop_cfg_set_max_threads(config, UInt32(maxThreads))
        fuse_loop_cfg_set_idle_threads(config, 16)
        FuseChannel.unblockWakeSignal()   // the workers, started from this thread, inherit it
        let status = wan_fuse_session_loop_mt(session, config)
        signalSources.forEach { $0.cancel() }
        unmount()
        return status
    }

    // MARK: - The operation table

    static func context(_ req: fuse_req_t?) -> Context {
        Unmanaged<Context>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
    }

    static func operations() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { userdata, conn in
            guard let conn, let userdata else { return }
            let context = Unmanaged<Context>.fromOpaque(userdata).takeUnretainedValue()
            // max_read must be set here as well as in the mount options, or the session dies (EPROTO).
            conn.pointee.max_read = UInt32(context.maxRead)
            conn.pointee.max_readahead = UInt32.max   // the kernel keeps the smaller of ours and its own
            conn.pointee.max_background = 64
            conn.pointee.congestion_threshold = 48
            defer {
                let record = FuseChannel.Record(initRequest: context.channel.recordedInit ?? [], want: conn.pointee.want, maxRead: context.maxRead,
                                                passthrough: context.fs.passthroughNegotiated.load(ordering: .relaxed),
                                                directIOMmap: context.fs.directIONegotiated.load(ordering: .relaxed))
                context.negotiated.withLock { $0 = record }
                context.onNegotiated(record)
            }
            if let adopted = context.adopted {
                // The replayed INIT of a connection taken over: the kernel holds the first
                // daemon's answer (this one's goes nowhere), so agree to exactly that.
                conn.pointee.want = adopted.want & conn.pointee.capable
                context.fs.directIONegotiated.store(adopted.directIOMmap, ordering: .relaxed)
                context.fs.passthroughNegotiated.store(adopted.passthrough, ordering: .relaxed)
                return
            }
            let wanted = UInt32(FUSE_CAP_ASYNC_READ) | UInt32(FUSE_CAP_SPLICE_WRITE) | UInt32(FUSE_CAP_SPLICE_MOVE)
                | UInt32(FUSE_CAP_PARALLEL_DIROPS) | UInt32(FUSE_CAP_READDIRPLUS)
            conn.pointee.want |= wanted & conn.pointee.capable
            // Reads of files still being fetched then skip the mount's page cache (mmap still works).
            if context.fs.settings.directIO && wan_fuse_want_direct_io_mmap(conn) != 0 {
                context.fs.directIONegotiated.store(true, ordering: .relaxed)
            }
            // Complete files are then read by the kernel from their blobs, not through us.
            // Registering a backing file needs CAP_SYS_ADMIN: a user's mount does not ask.
            if context.fs.settings.passthrough && geteuid() == 0 && wan_fuse_want_passthrough(conn) != 0 {
                context.fs.passthroughNegotiated.store(true, ordering: .relaxed)
            }
        }
        ops.lookup = { req, parent, name in
            guard let name else { fuse_reply_err(req, EINVAL); return }
            let fs = FuseSession.context(req).fs
            do throws(FSError) {
                var entry = FuseSession.entry(try fs.lookup(parent: UInt64(parent), name: String(cString: name)), fs)
                fuse_reply_entry(req, &entry)
            } catch {
                fuse_reply_err(req, error.errno)
            }
        }
        ops.forget = { req, _, _ in fuse_reply_none(req) }   // the table is static: nothing to forget
        ops.forget_multi = { req, _, _ in fuse_reply_none(req) }
        ops.getattr = { req, ino, _ in
            let fs = FuseSession.context(req).fs
            do throws(FSError) {
                var attributes = FuseSession.stat(try fs.attributes(UInt64(ino)), fs)
                fuse_reply_attr(req, &attributes, FuseSession.cacheSeconds)
            } catch {
                fuse_reply_err(req, error.errno)
            }
        }
        ops.opendir = { req, ino, fi in
            let fs = FuseSession.context(req).fs
            guard let attributes = try? fs.attributes(UInt64(ino)) else { fuse_reply_err(req, ENOENT); return }
            guard attributes.isDirectory else { fuse_reply_err(req, ENOTDIR); return }
            if let fi {
                wan_fi_set_cache_readdir(fi, 1)
                wan_fi_set_keep_cache(fi, 1)
            }
            fuse_reply_open(req, fi)
        }
        ops.releasedir = { req, _, _ in fuse_reply_err(req, 0) }
        ops.readdir = { req, ino, size, offset, _ in FuseSession.readdir(req, ino, size, offset, plus: false) }
        ops.readdirplus = { req, ino, size, offset, _ in FuseSession.readdir(req, ino, size, offset, plus: true) }
        ops.open = { req, ino, fi in
            guard let fi else { fuse_reply_err(req, EINVAL); return }
            let context = FuseSession.context(req)
            do throws(FSError) {
                let register: ((Int32) -> Int32?)? = context.fs.passthroughNegotiated.load(ordering: .relaxed) ? { fd in
                    let id = wan_fuse_passthrough_open(req, fd)
                    if id <= 0 { context.logger.warning("the kernel refused a passthrough backing file (the daemon needs CAP_SYS_ADMIN): complete files are served through the daemon") }
                    return id > 0 ? id : nil
                } : nil
                let reply = try context.fs.open(UInt64(ino), flags: fi.pointee.flags, register: register)
                fi.pointee.fh = reply.handle
                switch reply.mode {
                case .passthrough(let backingID):
                    wan_fi_set_backing_id(fi, backingID)   // the kernel allows no other open flag with it
                case .cached:
                    wan_fi_set_keep_cache(fi, reply.keepCache ? 1 : 0)
                    wan_fi_set_direct_io(fi, reply.directIO ? 1 : 0)
                }
                if fuse_reply_open(req, fi) != 0, let backingID = context.fs.release(handle: reply.handle) {
                    wan_fuse_passthrough_close(req, backingID)
                }
            } catch {
                if error.errno == EIO { context.logger.error("open inode \(ino): \(error)") }
                fuse_reply_err(req, error.errno)
            }
        }
        ops.read = { req, ino, size, offset, fi in
            guard let fi else { fuse_reply_err(req, EBADF); return }
            let context = FuseSession.context(req)
            do throws(FSError) {
                switch try context.fs.read(handle: fi.pointee.fh, ino: UInt64(ino), offset: Int64(offset), size: size) {
                case .file(let file, let at, let count):
                    // Spliced from the blob or partial file when possible; `file` stays open until the reply is sent.
                    withExtendedLifetime(file) {
                        _ = wan_fuse_reply_fd(req, file.descriptor.rawValue, off_t(at), count, 1)
                    }
                case .bytes(let bytes):
                    bytes.withUnsafeBufferPointer { buffer in
                        _ = buffer.withMemoryRebound(to: CChar.self) { fuse_reply_buf(req, $0.baseAddress, $0.count) }
                    }
                }
            } catch {
                context.logger.error("read: \(error)")
                fuse_reply_err(req, error.errno)
            }
        }
        ops.release = { req, _, fi in
            if let fi, let backingID = FuseSession.context(req).fs.release(handle: fi.pointee.fh) {
                wan_fuse_passthrough_close(req, backingID)
            }
            fuse_reply_err(req, 0)
        }
        ops.flush = { req, _, _ in fuse_reply_err(req, 0) }
        ops.statfs = { req, _ in
            let fs = FuseSession.context(req).fs
            var info = statvfs()
            let blockSize: Int64 = 4096
            info.f_bsize = UInt(blockSize)
            info.f_frsize = UInt(blockSize)
            if let space = fs.statistics() {
                info.f_blocks = fsblkcnt_t(space.totalBytes / blockSize)
                info.f_bfree = fsblkcnt_t(space.freeBytes / blockSize)
                info.f_bavail = fsblkcnt_t(space.availableBytes / blockSize)
            }
            info.f_files = fsfilcnt_t(fs.inodeCount)
            info.f_namemax = 255
            fuse_reply_statfs(req, &info)
        }
        ops.getxattr = { req, ino, name, size in
            guard let name else { fuse_reply_err(req, EINVAL); return }
            let fs = FuseSession.context(req).fs
            do throws(FSError) {
                FuseSession.replyXattr(req, Array(try fs.extendedAttribute(UInt64(ino), name: String(cString: name)).utf8), size)
            } catch {
                fuse_reply_err(req, error.errno)
            }
        }
        ops.listxattr = { req, ino, size in
            let fs = FuseSession.context(req).fs
            do throws(FSError) {
                FuseSession.replyXattr(req, try fs.extendedAttributeNames(UInt64(ino)).flatMap { Array($0.utf8) + [0] }, size)
            } catch {
                fuse_reply_err(req, error.errno)
            }
        }
        ops.access = { req, ino, mask in
            let fs = FuseSession.context(req).fs
            guard (try? fs.attributes(UInt64(ino))) != nil else { fuse_reply_err(req, ENOENT); return }
            fuse_reply_err(req, mask & W_OK != 0 ? EROFS : 0)
        }
        // Everything that would change the tree: read-only.
        ops.setattr = { req, _, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.mknod = { req, _, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.mkdir = { req, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.unlink = { req, _, _ in fuse_reply_err(req, EROFS) }
        ops.rmdir = { req, _, _ in fuse_reply_err(req, EROFS) }
        ops.symlink = { req, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.rename = { req, _, _, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.link = { req, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.write = { req, _, _, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.create = { req, _, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.setxattr = { req, _, _, _, _, _ in fuse_reply_err(req, EROFS) }
        ops.removexattr = { req, _, _ in fuse_reply_err(req, EROFS) }
        return ops
    }

    // MARK: - Conversions

    static func stat(_ attributes: WanFileSystem.Attributes, _ fs: WanFileSystem) -> stat {
        var info = Glibc.stat()
        info.st_ino = UInt(attributes.ino)
        info.st_mode = attributes.isDirectory ? (S_IFDIR | 0o555) : (S_IFREG | 0o444)
        info.st_nlink = UInt(attributes.links)
        info.st_size = Int(attributes.size)
        info.st_blocks = Int((attributes.size + 511) / 512)
        info.st_blksize = 1 << 20
        info.st_uid = fs.owner.uid
        info.st_gid = fs.owner.gid
        let seconds = Int(attributes.modified.timeIntervalSince1970)
        info.st_mtim = timespec(tv_sec: seconds, tv_nsec: 0)
        info.st_ctim = info.st_mtim
        info.st_atim = info.st_mtim
        return info
    }

    static func entry(_ attributes: WanFileSystem.Attributes, _ fs: WanFileSystem) -> fuse_entry_param {
        var entry = fuse_entry_param()
        entry.ino = fuse_ino_t(attributes.ino)
        entry.generation = 1
        entry.attr = stat(attributes, fs)
        entry.attr_timeout = cacheSeconds
        entry.entry_timeout = cacheSeconds
        return entry
    }

    /// readdir and readdirplus: entries from `offset` on, as many as fit in `size` bytes.
    static func readdir(_ req: fuse_req_t?, _ ino: fuse_ino_t, _ size: Int, _ offset: off_t, plus: Bool) {
        let fs = context(req).fs
        let entries: [(name: String, attributes: WanFileSystem.Attributes)]
        let this: WanFileSystem.Attributes
        do throws(FSError) {
            this = try fs.attributes(UInt64(ino))
            entries = try fs.list(UInt64(ino))
        } catch {
            fuse_reply_err(req, error.errno)
            return
        }
        let all = [(".", this), ("..", this)] + entries
        var buffer = [CChar](repeating: 0, count: size)
        var used = 0
        var index = Int(offset)
        while index < all.count {
            let (name, attributes) = all[index]
            let added: Int = buffer.withUnsafeMutableBufferPointer { raw in
                let start = raw.baseAddress! + used
                if plus {
                    var entry = self.entry(attributes, fs)
                    if name == "." || name == ".." { entry = fuse_entry_param(); entry.attr = stat(attributes, fs) }
                    return fuse_add_direntry_plus(req, start, size - used, name, &entry, off_t(index + 1))
                }
                var info = stat(attributes, fs)
                return fuse_add_direntry(req, start, size - used, name, &info, off_t(index + 1))
            }
            if added > size - used { break }
            used += added
            index += 1
        }
        _ = buffer.withUnsafeBufferPointer { fuse_reply_buf(req, $0.baseAddress, used) }
    }

    /// getxattr/listxattr: the size when asked for it, ERANGE when the buffer is too small.
    static func replyXattr(_ req: fuse_req_t?, _ value: [UInt8], _ size: Int) {
        if size == 0 {
            fuse_reply_xattr(req, value.count)
        } else if size < value.count {
            fuse_reply_err(req, ERANGE)
        } else {
            _ = value.withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { fuse_reply_buf(req, $0.baseAddress, $0.count) }
            }
        }
    }
}
