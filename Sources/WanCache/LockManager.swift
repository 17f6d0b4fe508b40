import Foundation
import Synchronization
import Glibc
import WanCore
import WanSystem

/// Cross-process locks on files in `MODELS_ROOT/.locks/` (seed 000's `LockManager`).
///
/// Locks are `flock`s, so the kernel drops them when their owner dies: no stale lock can
/// outlive its process. The lock files themselves stay (empty or naming the last owner).
/// They are created 0644 by whoever locks first and are never opened through a symlink: a
/// symlink planted at a lock's path is removed and a real file created in its place.
/// (`flock` needs no write access, so a lock file created by another user still locks.)
///
/// - Model locks: **shared** while a model is in use (being ensured, verified, or read
///   through the mount); **exclusive** to remove it (GC, `--force`). `isLocked` asks
///   whether anyone holds it in any mode.
/// - File locks (per content sha256): **exclusive** while a process owns the fetch of that
///   content, or removes its partial file or blob (GC, `--force`); others wait or follow.
public final class LockManager: Sendable {
    public enum Mode: Sendable { case shared, exclusive }

    /// A held lock; released by `release()` or when the value is dropped.
    public final class Lock: Sendable {
        /// Taken out by the first `release()`: two threads releasing at once close it once.
        private let descriptor: Mutex<FileDescriptor?>
        public let name: String
        public let mode: Mode

        init(descriptor: FileDescriptor, name: String, mode: Mode) {
            self.descriptor = Mutex(descriptor)
            self.name = name
            self.mode = mode
        }

        public func release() {
            guard let descriptor = self.descriptor.withLock({ held in defer { held = nil }; return held }) else { return }
            try? descriptor.unlock()   // closing drops the lock anyway
            descriptor.close()
        }

        deinit { release() }
    }

    /// The lock directory's path (for messages and `diagnose`).
    public let directory: String
    /// The directory the lock directory is walked from (followed if a symlink), and the walk.
    private let base: String
    private let relative: String

    /// Locks in `directory` (opened as given, symlinks included: for tests and tools).
    public init(directory: String) {
        self.directory = directory
        self.base = directory
        self.relative = ""
    }

    /// Locks in `MODELS_ROOT/.locks`, reached without following a symlink below MODELS_ROOT.
    public init(resolver: ModelResolver) {
        self.directory = resolver.locksDir
        self.base = resolver.modelsRoot
        self.relative = ".locks"
    }

    func path(_ name: String) -> String { directory + "/" + name + ".lock" }

    /// Takes `name` in `mode`, waiting up to `timeout` seconds.
    /// - Throws: ``OrchestratorError/lockTimeout(resource:timeout:)`` when it stays taken.
    public func acquire(_ name: String, mode: Mode = .exclusive, timeout: Double = 300) throws -> Lock {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if let lock = try tryAcquire(name, mode: mode) { return lock }
            if Date() >= deadline { throw OrchestratorError.lockTimeout(resource: name, timeout: timeout) }
            Thread.sleep(forTimeInterval: min(0.05, max(0.001, deadline.timeIntervalSinceNow)))
        }
    }

    /// Takes `name` in `mode` if nobody holds it in a conflicting mode; nil otherwise.
    public func tryAcquire(_ name: String, mode: Mode = .exclusive) throws(SystemError) -> Lock? {
        let (fd, writable) = try open(name)
        do {
            guard try fd.lock(exclusive: mode == .exclusive, wait: false) else {
                fd.close()
                return nil
            }
            if mode == .exclusive && writable {
                // For `wan models diagnose`: who holds it. Best effort: the lock is what counts.
                try? fd.truncate(to: 0)
                try? fd.write(Array("pid \(ProcessInfo.processInfo.processIdentifier) since \(Date())\n".utf8), at: 0)
            }
            return Lock(descriptor: fd, name: name, mode: mode)
        } catch {
            fd.close()
            throw error
        }
    }

    /// Opens (creating) the lock file of `name`, never through a symlink.
    private func open(_ name: String) throws(SystemError) -> (FileDescriptor, writable: Bool) {
        let parts = name.split(separator: "/").map(String.init)
        guard let last = parts.last else { throw SystemError(errno: EINVAL, operation: "lock (empty name)", path: directory) }
        let folder = ([relative] + parts.dropLast()).filter { !$0.isEmpty }.joined(separator: "/")
        let parent = try Directory.open(base, create: true).subdirectory(folder, create: true)
        let file = last + ".lock"
        do {
            return (try parent.createOrOpenRegular(file, permissions: 0o644), true)
        } catch where error.errno == EACCES {
            // Created by another user (0644): flock works on a read-only descriptor too.
            return (try parent.openFile(file, .readOnly), false)
        }
    }

    /// Whether anyone (this process included) holds `name` in any mode.
    public func isLocked(_ name: String) -> Bool {
        guard FileManager.default.fileExists(atPath: path(name)) else { return false }
        guard let probe = try? tryAcquire(name, mode: .exclusive) else { return true }
        probe.release()
        return false
    }

    // MARK: - Seed 000 names

    public static func modelLockName(_ modelDirectory: String) -> String { modelDirectory }
    public static func fileLockName(_ sha256: String) -> String { "files/" + sha256 }

    /// `acquire_model_lock`: an exclusive lock on a model, waiting up to `timeout`.
    public func acquireModelLock(_ modelDirectory: String, timeout: Double = 300) throws -> Lock {
        try acquire(Self.modelLockName(modelDirectory), mode: .exclusive, timeout: timeout)
    }

    /// `is_locked`.
    public func isModelLocked(_ modelDirectory: String) -> Bool { isLocked(Self.modelLockName(modelDirectory)) }

    /// Lock files present, with whether they are held right now (for `diagnose`).
    public func inventory() -> [(name: String, held: Bool, owner: String?)] {
        guard let enumerator = FileManager.default.enumerator(atPath: directory) else { return [] }
        var result: [(String, Bool, String?)] = []
        while let relative = enumerator.nextObject() as? String {
            guard relative.hasSuffix(".lock") else { continue }
            let name = String(relative.dropLast(5))
            let owner = (try? String(contentsOfFile: directory + "/" + relative, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            result.append((name, isLocked(name), owner?.isEmpty == false ? owner : nil))
        }
        return result.sorted { $0.0 < $1.0 }
    }
}
