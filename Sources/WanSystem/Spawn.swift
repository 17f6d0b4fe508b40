import Foundation
import Glibc

/// Starting a process of ours with chosen descriptors (posix_spawn), and replacing this process
/// with one (execve). The raw calls of process creation live here.
public enum Spawn {
    /// Starts `executable` with `arguments` (argv[0] included); `descriptors` maps a descriptor
    /// of ours to the number the child sees (3, 4, ...); stdin, stdout and stderr are shared.
    /// With `newSession`, the child leads a session of its own (a terminal's hangup or a
    /// signal to the caller's process group does not reach it).
    public static func start(_ executable: String, _ arguments: [String], environment: [String: String],
                             descriptors: [(from: Int32, to: Int32)], newSession: Bool = false) throws -> pid_t {
        // Copies above every target first, so no dup2 overwrites a source still to be copied.
        var copies: [(Int32, Int32)] = []
        defer { for (copy, _) in copies { Glibc.close(copy) } }
        for (from, to) in descriptors {
            let copy = fcntl(from, F_DUPFD_CLOEXEC, 100)
            guard copy >= 0 else { throw SystemError(errno: errno, operation: "fcntl(F_DUPFD_CLOEXEC)") }
            copies.append((copy, to))
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (copy, to) in copies { posix_spawn_file_actions_adddup2(&actions, copy, to) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // POSIX_SPAWN_SETSID (0x80 in glibc; its module hides the name without _GNU_SOURCE).
        if newSession { posix_spawnattr_setflags(&attributes, 0x80) }
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else { throw SystemError(errno: result, operation: "posix_spawn", path: executable) }
        return pid
    }

    /// Replaces this process with `executable` (returns only when that fails).
    public static func replace(with executable: String, _ arguments: [String], environment: [String: String]) -> SystemError {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        execve(executable, argv, envp)
        let error = SystemError(errno: errno, operation: "execve", path: executable)
        (argv + envp).forEach { free($0) }
        return error
    }

    /// Closes every descriptor above 2 but `keeping`.
    public static func closeDescriptors(keeping: Set<Int32>) {
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd"))?.compactMap { Int32($0) } ?? []
        for fd in open where fd > 2 && !keeping.contains(fd) { Glibc.close(fd) }
    }

    /// A pipe whose ends close on exec.
    public static func pipe() throws -> (read: Int32, write: Int32) {
        let ends = try Sys.pipe()
        for end in [ends.read, ends.write] { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        return ends
    }

    /// Clears FD_CLOEXEC, so `fd` survives an exec.
    public static func keepAcrossExec(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) }
    }

    /// This executable's path.
    public static var currentExecutable: String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        let path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // Replaced on disk since it started (a package upgrade): the binary on disk is meant.
        return path.hasSuffix(" (deleted)") ? String(path.dropLast(" (deleted)".count)) : path
    }
}
