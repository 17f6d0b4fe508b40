import Glibc
import Foundation
import Synchronization

// Every raw POSIX call of the project goes through this file (the swift-system pattern):
// `-1` becomes a typed `SystemError`, EINTR is retried, and tests can force an errno for
// any named operation through `FaultInjection`.

/// Test hook: forces the next calls of an operation to fail with an errno, optionally only
/// on threads whose name starts with a prefix. Tests run in parallel in one process, so each
/// arms and disarms only its own faults: an entry is keyed by operation and thread prefix,
/// and `reset(onThreadsNamed:)` removes only the entries of that prefix.
enum FaultInjection {
    private struct Key: Hashable {
        let operation: String
        let threadPrefix: String?
    }
    private struct Entry {
        let errno: Int32
        var remaining: Int
    }
    private static let forced = Mutex<[Key: Entry]>([:])
    private static let armed = Atomic<Bool>(false)

    /// Makes the next `count` calls of `operation` (e.g. "pwrite") fail with `errno`.
    static func force(_ operation: String, errno: Int32, count: Int = 1, onThreadsNamed prefix: String? = nil) {
        forced.withLock { $0[Key(operation: operation, threadPrefix: prefix)] = Entry(errno: errno, remaining: count) }
        armed.store(true, ordering: .releasing)
    }

    /// Removes the faults armed for `prefix` (all of them when `nil`, for a test that runs alone).
    static func reset(onThreadsNamed prefix: String?) {
        forced.withLock { table in
            table = prefix.map { prefix in table.filter { $0.key.threadPrefix != prefix } } ?? [:]
            armed.store(!table.isEmpty, ordering: .releasing)
        }
    }

    static func take(_ operation: String) -> Int32? {
        guard armed.load(ordering: .acquiring) else { return nil }
        let threadName = Sys.threadName()
        return forced.withLock { table -> Int32? in
            guard let (key, entry) = table.first(where: { key, entry in
                key.operation == operation && entry.remaining > 0
                    && (key.threadPrefix.map { threadName.hasPrefix($0) } ?? true)
            }) else { return nil }
            table[key]?.remaining -= 1
            return entry.errno
        }
    }
}

/// Runs a system call that returns -1 and sets errno on failure, retrying on EINTR.
@inline(__always)
func syscall<T: FixedWidthInteger>(_ operation: String, path: String? = nil, _ body: () -> T) throws(SystemError) -> T {
    while true {
        if let forced = FaultInjection.take(operation) {
            throw SystemError(errno: forced, operation: operation, path: path)
        }
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        throw SystemError(errno: code, operation: operation, path: path)
    }
}

enum Sys {
    static func open(_ path: String, _ flags: Int32, _ mode: mode_t) throws(SystemError) -> Int32 {
        try syscall("open", path: path) { Glibc.open(path, flags, mode) }
    }

    static func close(_ fd: Int32) {
        // close is not retried on EINTR: on Linux the descriptor is released either way.
        _ = Glibc.close(fd)
    }

    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ offset: Int64) throws(SystemError) -> Int {
        try syscall("pread") { Glibc.pread(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64) throws(SystemError) -> Int {
        try syscall("pwrite") { Glibc.pwrite(fd, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// `operation` names it for messages and fault injection ("fsync(directory)" for a directory).
    static func fsync(_ fd: Int32, operation: String = "fsync", path: String? = nil) throws(SystemError) {
        _ = try syscall(operation, path: path) { Glibc.fsync(fd) }
    }

    static func fdatasync(_ fd: Int32) throws(SystemError) {
        _ = try syscall("fdatasync") { Glibc.fdatasync(fd) }
    }

    static func fchmod(_ fd: Int32, _ mode: mode_t) throws(SystemError) {
        _ = try syscall("fchmod") { Glibc.fchmod(fd, mode) }
    }

    static func ftruncate(_ fd: Int32, _ length: Int64) throws(SystemError) {
        _ = try syscall("ftruncate") { Glibc.ftruncate(fd, off_t(length)) }
    }

    static func fileStatus(_ fd: Int32) throws(SystemError) -> stat {
        var info = stat()
        _ = try syscall("fstat") { fstat(fd, &info) }
        return info
    }

    static func pathStatus(_ path: String, followSymlinks: Bool) throws(SystemError) -> stat {
        var info = stat()
        if followSymlinks {
            _ = try syscall("stat", path: path) { stat(path, &info) }
        } else {
            _ = try syscall("lstat", path: path) { lstat(path, &info) }
        }
        return info
    }

    static func filesystemStatus(_ path: String) throws(SystemError) -> statvfs {
        var info = statvfs()
        _ = try syscall("statvfs", path: path) { statvfs(path, &info) }
        return info
    }

    static func lock(_ fd: Int32, _ operation: Int32) throws(SystemError) {
        _ = try syscall("flock") { flock(fd, operation) }
    }

    static func rename(_ from: String, _ to: String) throws(SystemError) {
        _ = try syscall("rename", path: "\(from) -> \(to)") { Glibc.rename(from, to) }
    }

    static func link(_ from: String, _ to: String) throws(SystemError) {
        _ = try syscall("link", path: "\(from) -> \(to)") { Glibc.link(from, to) }
    }

    static func unlink(_ path: String) throws(SystemError) {
        _ = try syscall("unlink", path: path) { Glibc.unlink(path) }
    }

    static func mkdir(_ path: String, _ mode: mode_t) throws(SystemError) {
        _ = try syscall("mkdir", path: path) { Glibc.mkdir(path, mode) }
    }

    // The *at family: relative to an open directory, so no path component above it is
    // looked up again (and, with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, no symlink is followed).

    static func openat(_ directory: Int32, _ name: String, _ flags: Int32, _ mode: mode_t, path: String) throws(SystemError) -> Int32 {
        try syscall("openat", path: path) { Glibc.openat(directory, name, flags, mode) }
    }

    static func mkdirat(_ directory: Int32, _ name: String, _ mode: mode_t, path: String) throws(SystemError) {
        _ = try syscall("mkdirat", path: path) { Glibc.mkdirat(directory, name, mode) }
    }

    static func renameat(_ fromDirectory: Int32, _ from: String, _ toDirectory: Int32, _ to: String, path: String) throws(SystemError) {
        _ = try syscall("renameat", path: path) { Glibc.renameat(fromDirectory, from, toDirectory, to) }
    }

    static func linkat(_ fromDirectory: Int32, _ from: String, _ toDirectory: Int32, _ to: String, path: String) throws(SystemError) {
        _ = try syscall("linkat", path: path) { Glibc.linkat(fromDirectory, from, toDirectory, to, 0) }
    }

    static func unlinkat(_ directory: Int32, _ name: String, _ flags: Int32, path: String) throws(SystemError) {
        _ = try syscall("unlinkat", path: path) { Glibc.unlinkat(directory, name, flags) }
    }

    static func statat(_ directory: Int32, _ name: String, path: String) throws(SystemError) -> stat {
        var info = stat()
        _ = try syscall("fstatat", path: path) { fstatat(directory, name, &info, AT_SYMLINK_NOFOLLOW) }
        return info
    }

    /// The names in an open directory (without `.` and `..`); the descriptor stays open.
    static func directoryEntries(_ directory: Int32, path: String) throws(SystemError) -> [String] {
        let copy = try syscall("dup", path: path) { Glibc.dup(directory) }
        guard let stream = fdopendir(copy) else {
            let code = errno
            Glibc.close(copy)
            throw SystemError(errno: code, operation: "fdopendir", path: path)
        }
        defer { closedir(stream) }
        rewinddir(stream)
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw SystemError(errno: errno, operation: "readdir", path: path) }
                return names
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }

    static func pipe() throws(SystemError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        _ = try syscall("pipe") { Glibc.pipe(&fds) }
        return (fds[0], fds[1])
    }

    static func fork() throws(SystemError) -> Int32 {
        try syscall("fork") { Glibc.fork() }
    }

    static func setsid() {
        _ = Glibc.setsid()
    }

    static func dup2(_ from: Int32, _ to: Int32) throws(SystemError) {
        _ = try syscall("dup2") { Glibc.dup2(from, to) }
    }

    static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) -> Int {
        try syscall("write") { Glibc.write(fd, buffer.baseAddress, buffer.count) }
    }

    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> Int {
        try syscall("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    /// Sets the nice value of the calling thread (Linux keeps one per thread).
    static func setThreadNice(_ value: Int32) throws(SystemError) {
        _ = try syscall("setpriority") { Glibc.setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, value) }
    }

    /// The calling thread's name lives in /proc/thread-self/comm (Glibc's module does not
    /// export pthread_setname_np, and prctl is variadic). Raw calls, not `syscall(...)`:
    /// fault injection reads the name, and must not inject into it.
    static func setThreadName(_ name: String) {
        let fd = Glibc.open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { _ = Glibc.close(fd) }
        let bytes = Array(name.utf8.prefix(15))
        while Glibc.write(fd, bytes, bytes.count) < 0 && errno == EINTR {}
    }

    static func threadName() -> String {
        let fd = Glibc.open("/proc/thread-self/comm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { _ = Glibc.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 32)
        var count = -1
        repeat { count = Glibc.read(fd, &buffer, buffer.count) } while count < 0 && errno == EINTR
        guard count > 0 else { return "" }
        return String(decoding: buffer[..<count].prefix { $0 != 0x0A }, as: UTF8.self)
    }

    static func access(_ path: String, _ mode: Int32) -> Bool {
        Glibc.access(path, mode) == 0
    }
}
