import Foundation
import WanCore
import WanSystem

/// Cross-process locks on files in `MODELS_ROOT/.locks/` (seed 000's `LockManager`).
///
/// Locks are `flock`s, so the kernel drops them when their owner dies: no stale lock can
/// outlive its process. The lock files themselves stay (empty or naming the last owner).
///
/// - Model locks: **shared** while a model is in use (being ensured, verified, or read
///   through the mount); **exclusive** to remove it (GC, `--force`). `isLocked` asks
///   whether anyone holds it in any mode.
/// - File locks (per content sha256): **exclusive** while a process owns the fetch of that
///   content; others wait or follow its progress.
public final class LockManager: Sendable {
    public enum Mode: Sendable { case shared, exclusive }

    /// A held lock; released by `release()` or when the value is dropped.
    public final class Lock: @unchecked Sendable {
        private var descriptor: FileDescriptor?
        public let name: String
        public let mode: Mode

        init(descriptor: FileDescriptor, name: String, mode: Mode) {
            self.descriptor = descriptor
            self.name = name
            self.mode = mode
        }

        public func release() {
            guard let descriptor else { return }
            try? descriptor.unlock()
            descriptor.close()
            self.descriptor = nil
        }

        deinit { release() }
    }

    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public convenience init(resolver: ModelResolver) {
        self.init(directory: resolver.locksDir)
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
        let file = path(name)
        try FileSystem.createDirectories((file as NSString).deletingLastPathComponent)
        let fd = try FileDescriptor.open(file, .readWrite, create: true, permissions: 0o666)
        do {
            guard try fd.lock(exclusive: mode == .exclusive, wait: false) else {
                fd.close()
                return nil
            }
            if mode == .exclusive {
                // For `wan models diagnose`: who holds it. Best effort.
                try? fd.truncate(to: 0)
                try? fd.write(Array("pid \(ProcessInfo.processInfo.processIdentifier) since \(Date())\n".utf8), at: 0)
            }
            return Lock(descriptor: fd, name: name, mode: mode)
        } catch {
            fd.close()
            throw error
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
