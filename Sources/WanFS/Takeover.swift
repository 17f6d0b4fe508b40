import Foundation
import Logging
import Synchronization
import WanCore
import WanSystem

/// A running mount hands its FUSE connection to a new daemon (`-o takeover`): an upgrade or a
/// restart without unmounting. The conversation, over a Unix socket under
/// `MODELS_ROOT/.state/mounts/` (mode 0600, and the peer must be the same user or root):
///
/// ```
/// new daemon                         running daemon
///   hello                       ->
///                               <-   welcome (its mount options, its pid)
///   (merges the options, loads the manifest, prepares the cache: a failure ends here, and
///    the running daemon never noticed)
///   takeOver                    ->   parks its workers, waits for the requests being served
///                               <-   handover (the kernel's INIT, the tree, the open handles)
///                                    + the /dev/fuse descriptor (SCM_RIGHTS)
///   (replays INIT into its own session, serves)
///   serving (its pid)           ->   lets its workers go, tells systemd the new main pid,
///                                    exits without unmounting
/// ```
///
/// If the new daemon goes away before `serving`, the running one serves again. A second
/// `takeOver` while one is in progress is refused.
public enum Takeover {
    enum Message: Codable, Sendable {
        case hello(version: Int)
        case welcome(options: [String], pid: Int32)
        case takeOver
        case handover(Handover)
        case serving(pid: Int32)
        case refused(String)
    }

    struct Handover: Codable, Sendable {
        var record: FuseChannel.Record
        var filesystem: WanFileSystem.HandoverState
    }

    static let version = 1

    /// The socket of the mount at `mountpoint` over `modelsRoot`.
    public static func socketPath(modelsRoot: String, mountpoint: String) -> String {
        statePath(modelsRoot: modelsRoot, mountpoint: mountpoint, "sock")
    }

    /// `MODELS_ROOT/.state/mounts/<key>.<suffix>`, the key derived from the mountpoint.
    static func statePath(modelsRoot: String, mountpoint: String, _ suffix: String) -> String {
        let key = SHA256Hasher.hash(Array(mountpoint.utf8)).hex.prefix(16)
        return ModelResolver(modelsRoot: modelsRoot).stateDir + "/mounts/\(key).\(suffix)"
    }

    /// Why a takeover did not happen.
    public struct Failure: CodedError {
        public let message: String
        /// The running mount refused (the new daemon's options or manifest are fine).
        public let code: ErrorCode
        public var description: String { message }
    }

    static func encode(_ message: Message) -> [UInt8] {
        (try? Array(JSONEncoder().encode(message))) ?? []
    }

    static func decode(_ bytes: [UInt8]) -> Message? {
        try? JSONDecoder().decode(Message.self, from: Data(bytes))
    }
}

// MARK: - The new daemon's side

/// The new daemon's end of the conversation.
final class TakeoverClient: Sendable {
    private let socket: UnixSocket
    /// The running daemon's mount options and pid.
    let options: [String]
    let pid: Int32
    /// The socket's descriptor (a daemon that forks keeps it).
    var descriptor: Int32 { socket.descriptor }

    /// Connects to the mount at `mountpoint` and greets it.
    init(modelsRoot: String, mountpoint: String) throws(Takeover.Failure) {
        let path = Takeover.socketPath(modelsRoot: modelsRoot, mountpoint: mountpoint)
        func fail(_ message: String) -> Takeover.Failure { Takeover.Failure(message: message, code: .ioError) }
        do {
            guard let socket = try UnixSocket.connect(to: path) else {
                throw fail("no wanfs daemon serves \(mountpoint) over \(modelsRoot) (nothing answers at \(path)): mount it first, without takeover")
            }
            self.socket = socket
            // Only a daemon of this user (or root) may hand a connection, and options, to this one.
            let peer = try socket.peerUserID()
            guard peer == geteuid() || peer == 0 else { throw fail("\(path) is served by another user (uid \(peer)): refused") }
            try socket.setReceiveTimeout(seconds: 30)
            try socket.send(Takeover.encode(.hello(version: Takeover.version)))
            switch Takeover.decode(try socket.receive().message) {
            case .welcome(let options, let pid):
                self.options = options
                self.pid = pid
            case .refused(let reason):
                throw fail("the running mount refused: \(reason)")
            default:
                throw fail("the running mount answered something else than its options")
            }
        } catch let error as Takeover.Failure {
            throw error
        } catch {
            throw fail("talking to the running mount at \(path): \(error)")
        }
    }

    /// Asks for the connection. The running daemon stops serving until ``confirmServing()``
    /// or until this client goes away. Returns the /dev/fuse descriptor (ours to close) and
    /// what comes with it.
    func takeOver(timeout: Double) throws(Takeover.Failure) -> (descriptor: Int32, handover: Takeover.Handover) {
        do {
            try socket.setReceiveTimeout(seconds: timeout)
            try socket.send(Takeover.encode(.takeOver))
            let (message, descriptor) = try socket.receive()
            switch Takeover.decode(message) {
            case .handover(let handover):
                guard let descriptor else { throw Takeover.Failure(message: "the running mount sent no FUSE descriptor", code: .ioError) }
                guard handover.record.isPlausible else {
                    close(descriptor)
                    throw Takeover.Failure(message: "the running mount sent no usable FUSE INIT", code: .ioError)
                }
                return (descriptor, handover)
            case .refused(let reason):
                if let descriptor { close(descriptor) }
                throw Takeover.Failure(message: "the running mount refused: \(reason)", code: .ioError)
            default:
                if let descriptor { close(descriptor) }
                throw Takeover.Failure(message: "the running mount answered something else than a handover", code: .ioError)
            }
        } catch let error as Takeover.Failure {
            throw error
        } catch {
            throw Takeover.Failure(message: "taking over from the running mount (pid \(pid)): \(error)", code: .ioError)
        }
    }

    /// Tells the previous daemon this one serves: it exits.
    func confirmServing() throws {
        try socket.send(Takeover.encode(.serving(pid: getpid())))
    }
}

// MARK: - The running daemon's side

/// Answers takeover requests for a running mount, one at a time.
final class TakeoverListener: Sendable {
    struct Callbacks: Sendable {
        /// Parks the session and returns the descriptor and state, or why not.
        let handOver: @Sendable () -> Result<(Int32, Takeover.Handover), Takeover.Failure>
        /// The new daemon (this pid) serves: end this one's session.
        let finish: @Sendable (Int32) -> Void
        /// The takeover failed after `handOver`: serve again.
        let resume: @Sendable () -> Void
    }

    private let listener: UnixListener
    private let options: [String]
    private let callbacks: Callbacks
    private let logger: Logger
    private let busy = Mutex(false)
    /// The socket file this listener put in place (removed on a clean unmount, unless a newer
    /// daemon's has replaced it).
    private let file: FileInfo?
    private let path: String

    /// Listens at `path`, replacing whatever socket is there atomically (a daemon that took
    /// over puts its own in place of the previous one's).
    init(path: String, options: [String], logger: Logger, callbacks: Callbacks) throws {
        try FileSystem.createDirectories(PathSplit.parent(path))
        let temporary = path + ".\(getpid()).new"
        listener = try UnixListener(path: temporary)
        try FileSystem.rename(temporary, to: path)
        file = try FileSystem.info(path)
        self.path = path
        self.options = options
        self.callbacks = callbacks
        self.logger = logger
        let accepting = Thread { [self] in acceptLoop() }
        accepting.name = "wan-takeover"
        accepting.start()
    }

    /// Stops answering; removes the socket file when it is still this listener's.
    func stop(removeFile: Bool) {
        listener.shutdown()
        if removeFile, let file, let now = try? FileSystem.info(path), now.inode == file.inode, now.device == file.device {
            try? FileSystem.unlink(path)
        }
    }

    private func acceptLoop() {
        ThreadName.set("wan-takeover")
        while let connection = try? listener.accept() {
            Thread.detachNewThread { [self] in
                ThreadName.set("wan-takeover")
                serve(connection)
            }
        }
    }

    private func serve(_ connection: UnixSocket) {
        guard let peer = try? connection.peerUserID(), peer == geteuid() || peer == 0 else {
            logger.warning("takeover: refused a connection from another user")
            return
        }
        // The new daemon prepares its cache between hello and takeOver.
        try? connection.setReceiveTimeout(seconds: 120)
        while let (message, descriptor) = try? connection.receive() {
            if let descriptor { close(descriptor) }
            switch Takeover.decode(message) {
            case .hello(let version) where version != Takeover.version:
                try? connection.send(Takeover.encode(.refused("this daemon speaks takeover version \(Takeover.version), the new one \(version)")))
                return
            case .hello:
                try? connection.send(Takeover.encode(.welcome(options: options, pid: getpid())))
            case .takeOver:
                guard busy.withLock({ busy in defer { busy = true }; return !busy }) else {
                    try? connection.send(Takeover.encode(.refused("another takeover of this mount is in progress")))
                    return
                }
                handOver(over: connection)
                busy.withLock { $0 = false }
                return
            default:
                try? connection.send(Takeover.encode(.refused("unexpected message")))
                return
            }
        }
    }

    private func handOver(over connection: UnixSocket) {
        let started = ContinuousClock.now
        switch callbacks.handOver() {
        case .failure(let failure):
            try? connection.send(Takeover.encode(.refused(failure.message)))
        case .success(let (descriptor, handover)):
            do {
                try connection.send(Takeover.encode(.handover(handover)), passing: descriptor)
                // The new daemon replays INIT and starts its workers; a minute is far more than it needs.
                try connection.setReceiveTimeout(seconds: 60)
                let (answer, extra) = try connection.receive()
                if let extra { close(extra) }
                guard case .serving(let pid) = Takeover.decode(answer) else { throw Takeover.Failure(message: "it answered something else", code: .ioError) }
                logger.notice("takeover: daemon \(pid) serves the mount (handed over in \(started.duration(to: .now))); this one exits")
                callbacks.finish(pid)
            } catch {
                logger.error("takeover failed (\(error)); serving again")
                callbacks.resume()
            }
        }
    }
}
