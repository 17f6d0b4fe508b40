import Foundation
import Glibc
import Logging
import WanCore
import WanSystem

/// A mount that outlives a daemon that dies (kill -9, a trap): a small *holder* process keeps
/// a copy of the /dev/fuse descriptor, so the kernel keeps the connection (callers wait
/// instead of getting ENOTCONN). When the daemon dies without saying goodbye the holder
/// becomes a new daemon (execve of mount.wanfs), which replays the kernel's INIT from the
/// saved connection, shows the saved tree (the kernel's inode numbers keep their meaning),
/// and asks the kernel to send again the requests the dead daemon read and never answered
/// (FUSE_NOTIFY_RESEND, Linux >= 6.9).
///
/// What the daemon saves, under `.state/mounts/<key>.connection` (rewritten after INIT, each
/// reload and each takeover): the kernel's INIT and what was agreed, the tree, the handle epoch.
public enum CrashRecovery {
    struct SavedConnection: Codable, Sendable {
        var record: FuseChannel.Record
        var table: InodeTable.Snapshot
        var epoch: UInt64
    }

    /// The name of the connection in systemd's descriptor store (FDNAME=).
    public static let storeName = "wanfs-fuse"
    /// The environment variable naming the descriptor a holder passes to the daemon it starts.
    public static let descriptorVariable = "WAN_RECOVER_FD"
    static let recoveriesVariable = "WAN_RECOVERIES"
    /// Recoveries in a row (each daemon dying within 10 minutes of its start) before the holder
    /// gives up and lets the mount fail (ENOTCONN).
    static let maxRecoveries = 5
    /// The descriptors a holder gets: the FUSE connection and the pipe from its daemon.
    static let heldDescriptor: Int32 = 3
    static let pipeDescriptor: Int32 = 4

    static func path(modelsRoot: String, mountpoint: String, _ suffix: String = "connection") -> String {
        Takeover.statePath(modelsRoot: modelsRoot, mountpoint: mountpoint, suffix)
    }

    static func save(_ saved: SavedConnection, modelsRoot: String, mountpoint: String) throws {
        try write(JSONEncoder().encode(saved), to: path(modelsRoot: modelsRoot, mountpoint: mountpoint))
    }

    /// The backing ids registered now (inode → id), rewritten at every registration and
    /// unregistration: a daemon carrying on after a crash answers opens of those inodes with them.
    static func saveBackingIDs(_ ids: [UInt64: Int32], modelsRoot: String, mountpoint: String) throws {
        let table = Dictionary(uniqueKeysWithValues: ids.map { (String($0.key), $0.value) })
        try write(JSONEncoder().encode(table), to: path(modelsRoot: modelsRoot, mountpoint: mountpoint, "backing"))
    }

    static func loadBackingIDs(modelsRoot: String, mountpoint: String) -> [UInt64: Int32] {
        guard let data = FileManager.default.contents(atPath: path(modelsRoot: modelsRoot, mountpoint: mountpoint, "backing")),
              let table = try? JSONDecoder().decode([String: Int32].self, from: data) else { return [:] }
        return Dictionary(table.compactMap { key, id in UInt64(key).flatMap { $0 > 0 && id > 0 ? ($0, id) : nil } }) { first, _ in first }
    }

    /// Replaces `target` whole (a temporary name of this process and thread, then rename).
    private static func write(_ data: Data, to target: String) throws {
        try FileSystem.createDirectories(PathSplit.parent(target))
        let temporary = target + ".\(getpid())-\(UUID().uuidString.prefix(8)).tmp"
        try data.write(to: URL(fileURLWithPath: temporary))
        try FileSystem.rename(temporary, to: target)
    }

    static func load(modelsRoot: String, mountpoint: String) throws -> SavedConnection {
        let source = path(modelsRoot: modelsRoot, mountpoint: mountpoint)
        guard let data = FileManager.default.contents(atPath: source) else {
            throw OrchestratorError.configInvalid(key: "recovery", message: "\(source) is missing: nothing saved of the connection to carry on")
        }
        let saved = try JSONDecoder().decode(SavedConnection.self, from: data)
        guard saved.record.isPlausible, saved.epoch < (1 << 20) else {
            throw OrchestratorError.configInvalid(key: "recovery", message: "\(source) does not hold a FUSE INIT and a handle epoch")
        }
        return saved
    }

    // MARK: - The daemon's side

    /// Starts the holder of this daemon's connection: `executable --hold ROOT MOUNTPOINT OPTIONS`
    /// with the connection as descriptor 3 and a pipe from this daemon as 4. Returns the
    /// holder's pid and the pipe's write end (``sayGoodbye(_:)`` on a clean exit).
    static func startHolder(executable: String, connection: Int32, options: MountOptions, recoveries: Int) throws -> (pid: Int32, pipe: Int32) {
        let (readEnd, writeEnd) = try Spawn.pipe()
        defer { close(readEnd) }
        var environment = ProcessInfo.processInfo.environment
        environment[recoveriesVariable] = String(recoveries)
        // Not systemd's service (that would use the descriptor store), not its descriptors.
        for name in [descriptorVariable, "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] { environment[name] = nil }
        do {
            let pid = try Spawn.start(executable, ["mount.wanfs", "--hold", options.modelsRoot, options.mountpoint, options.given.joined(separator: ",")],
                                      environment: environment, descriptors: [(connection, heldDescriptor), (readEnd, pipeDescriptor)], newSession: true)
            return (pid, writeEnd)
        } catch {
            close(writeEnd)
            throw error
        }
    }

    /// Tells the holder this daemon ends on purpose (unmounted, or handed over): it exits.
    static func sayGoodbye(_ pipe: Int32) {
        let bye = Array("bye\n".utf8)
        _ = Glibc.write(pipe, bye, bye.count)
        close(pipe)
    }

    // MARK: - The holder's side

    /// The holder: waits for its daemon's end; after a goodbye, or once the mount is gone, it
    /// exits; otherwise it becomes the next daemon (after a pause growing with the recoveries
    /// in a row). Never returns.
    public static func hold(modelsRoot: String, mountpoint: String, options: String, logger: Logger) -> Never {
        Spawn.closeDescriptors(keeping: [heldDescriptor, pipeDescriptor])
        let started = Date()
        var said: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let count = read(pipeDescriptor, &buffer, buffer.count)
            if count > 0 { said += buffer[..<count]; continue }
            if count < 0 && errno == EINTR { continue }
            break
        }
        if String(decoding: said, as: UTF8.self).contains("bye") { exit(0) }
        guard isMounted(mountpoint) else {
            logger.notice("the daemon of \(mountpoint) ended and the mount is gone: nothing to recover")
            exit(0)
        }
        let environment = ProcessInfo.processInfo.environment
        // A daemon that served for 10 minutes starts the count again.
        let before = Date().timeIntervalSince(started) > 600 ? 0 : Int(environment[recoveriesVariable] ?? "0") ?? 0
        guard before < maxRecoveries else {
            logger.critical("the daemon of \(mountpoint) died \(before + 1) times in a row; giving up (the mount fails with ENOTCONN: umount it and mount again)")
            exit(1)
        }
        let pause = min(5.0, 0.1 * Double(1 << before))
        logger.error("the daemon of \(mountpoint) died; starting a new one in \(pause) s (recovery \(before + 1) of at most \(maxRecoveries) in a row)")
        Thread.sleep(forTimeInterval: pause)
        close(pipeDescriptor)
        Spawn.keepAcrossExec(heldDescriptor)
        var next = environment
        next[descriptorVariable] = String(heldDescriptor)
        next[recoveriesVariable] = String(before + 1)
        var arguments = ["mount.wanfs", modelsRoot, mountpoint, "-f"]
        if !options.isEmpty { arguments += ["-o", options] }
        let failure = Spawn.replace(with: Spawn.currentExecutable ?? "/proc/self/exe", arguments, environment: next)
        logger.critical("could not start a new daemon for \(mountpoint): \(failure)")
        exit(1)
    }

    /// Whether `mountpoint` is a mount point now (/proc/self/mounts).
    static func isMounted(_ mountpoint: String) -> Bool {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { line in
            line.split(separator: " ").dropFirst().first.map { $0.replacingOccurrences(of: "\\040", with: " ") } == mountpoint
        }
    }
}
