import Foundation
import Synchronization
import Testing
import WanTestSupport

/// A real kernel mount of `mount.wanfs` over a scratch MODELS_ROOT, as a user makes one.
///
/// Needs /dev/fuse (and root, as CI runs): a machine without it fails these tests loudly.
final class MountFixture: @unchecked Sendable {
    let dir: Scratch
    let manifest: String
    let root: String
    let mountpoint: String
    private(set) var pid: Int32?

    /// A scratch folder with `manifest` written as models.toml, an empty root and mountpoint.
    init(manifest text: String, label: String = "wan-mount") throws {
        guard FileManager.default.fileExists(atPath: "/dev/fuse") else {
            throw TestEnvironmentError("/dev/fuse is missing: the mount tests need a machine that can mount FUSE")
        }
        dir = try Scratch(label)
        manifest = try dir.write("models.toml", text)
        root = dir.path + "/root"
        mountpoint = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
    }

    deinit { forceUnmount() }

    /// Mounts of this test process, unmounted at exit as a last resort: a fixture captured by a
    /// failed expectation lives until the run ends, and its deinit never runs.
    private static let live = Mutex<[String: Int32]>([:])
    private static let cleanupAtExit: Void = { atexit { MountFixture.unmountEverything() } }()

    private static func unmountEverything() {
        for (mountpoint, pid) in live.withLock({ $0 }) {
            _ = try? Shell.run("/bin/umount", ["-l", mountpoint])
            if pid > 0 { kill(pid, SIGKILL) }
        }
    }

    /// Runs `mount.wanfs ROOT MOUNTPOINT -o manifest=...,OPTIONS` (which returns once the mount answers).
    @discardableResult
    func mount(_ options: String = "", expectSuccess: Bool = true) throws -> Shell.Result {
        let list = "manifest=\(manifest)" + (options.isEmpty ? "" : "," + options)
        let result = try Shell.run(BuiltProducts.path("mount.wanfs"), [root, mountpoint, "-o", list], environment: Self.environment)
        if expectSuccess {
            guard result.status == 0 else { throw TestEnvironmentError("mount.wanfs failed (\(result.status)): \(result.output)") }
            pid = (try mountInfo()["pid"] as? NSNumber)?.int32Value
            _ = Self.cleanupAtExit
            Self.live.withLock { $0[mountpoint] = pid ?? 0 }
        }
        return result
    }

    /// A clean environment: no credentials or manifest from the machine running the tests.
    static var environment: [String: String] {
        ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": NSTemporaryDirectory()]
    }

    /// `umount`, then waits for the daemon to exit (it syncs partial files first).
    func unmount() throws {
        let result = try Shell.run("/bin/umount", [mountpoint])
        guard result.status == 0 else { throw TestEnvironmentError("umount \(mountpoint) failed: \(result.output)") }
        if let pid { try Self.waitForExit(pid) }
        pid = nil
        Self.live.withLock { $0[mountpoint] = nil }
    }

    /// The holder of the mount's connection (it starts a new daemon if this one dies).
    var holderPid: Int32? { (try? mountInfo()["holder"] as? NSNumber)?.int32Value }

    /// `kill -9` of the daemon (its holder first, so nothing carries the mount on), then a
    /// lazy unmount of the dead mount.
    func killDaemon() throws {
        let pid = try #require(pid)
        if let holder = holderPid {
            kill(holder, SIGKILL)
            try Self.waitForExit(holder)
        }
        kill(pid, SIGKILL)
        try Self.waitForExit(pid)
        forceUnmount()
        self.pid = nil
    }

    private func forceUnmount() {
        if isMounted { _ = try? Shell.run("/bin/umount", ["-l", mountpoint]) }
        if let pid { kill(pid, SIGKILL) }
        Self.live.withLock { $0[mountpoint] = nil }
    }

    var isMounted: Bool {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == mountpoint }
    }

    /// The daemon has exited (gone, or a zombie no one reaps in a container).
    static func waitForExit(_ pid: Int32, timeout: Double = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return }
            if let close = stat.lastIndex(of: ")"), stat[stat.index(close, offsetBy: 2)] == "Z" { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw TestEnvironmentError("mount daemon \(pid) did not exit within \(timeout) s")
    }

    /// `/.wanfs/mount.json`.
    func mountInfo() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: mountpoint + "/.wanfs/mount.json"))) as? [String: Any])
    }

    /// The path of `file` of `model` through the mount.
    func path(_ model: String, _ file: String) -> String { "\(mountpoint)/\(model)/\(file)" }

    /// `wan models ARGS --json` (status --mount and friends), parsed.
    func wan(_ arguments: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, json: [String: Any]) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("wan"))
        process.arguments = arguments + ["--json"]
        process.environment = Self.environment.merging(extra) { _, new in new }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
        return (process.terminationStatus, json)
    }

    /// A model's entry in `wan models status --mount MOUNTPOINT --verbose --json`.
    func liveStatus(_ model: String) throws -> [String: Any] {
        let (status, json) = try wan(["models", "status", "--mount", mountpoint, "--verbose"])
        #expect(status == 0)
        let models = try #require(json["models"] as? [[String: Any]])
        return try #require(models.first { $0["model_id"] as? String == model })
    }
}

/// Python through the mount, as a pipeline runs it: `python3 -c SCRIPT ARGS...`; stdout
/// is parsed as JSON.
enum Python {
    static func run(_ script: String, _ arguments: [String] = [], timeout: Double = 300) throws -> (status: Int32, json: Any?, output: String) {
        let result = try Shell.run("/usr/bin/timeout", [String(Int(timeout)), "python3", "-c", script] + arguments)
        let lastLine = result.output.split(separator: "\n").last.map(String.init) ?? ""
        return (result.status, try? JSONSerialization.jsonObject(with: Data(lastLine.utf8)), result.output)
    }
}

/// Reads a whole file (from `offset` on) through the mount with `read(2)`; the errno when it fails.
func readFile(_ path: String, from offset: Int = 0) -> Result<Data, POSIXErrorBox> {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return .failure(POSIXErrorBox(errno: errno)) }
    defer { close(fd) }
    if offset > 0 && lseek(fd, off_t(offset), SEEK_SET) < 0 { return .failure(POSIXErrorBox(errno: errno)) }
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n < 0 { return .failure(POSIXErrorBox(errno: errno)) }
        if n == 0 { return .success(data) }
        data.append(contentsOf: buffer[0..<n])
    }
}

struct POSIXErrorBox: Error, Equatable {
    let errno: Int32
}

/// `sha256sum` of a file, as the user would run it.
func sha256sum(_ path: String) throws -> String? {
    let result = try Shell.run("/usr/bin/sha256sum", [path])
    guard result.status == 0 else { return nil }
    return result.output.split(separator: " ").first.map(String.init)
}
