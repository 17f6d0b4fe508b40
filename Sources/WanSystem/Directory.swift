import Glibc

/// An open directory. Every operation on a name below it is relative to its descriptor and
/// never follows a symlink: a symlink where the cache expects a file or a directory is an
/// error (ELOOP), never a way out of the tree. (`MODELS_ROOT` itself may be a symlink: it is
/// the root the user named, opened with ``open(_:create:)``.)
///
/// Names are single path components; ``subdirectory(_:create:)`` walks a relative path one
/// component at a time.
public final class Directory: Sendable {
    public let descriptor: FileDescriptor
    /// For messages only: nothing is ever looked up by it.
    public let path: String

    private init(descriptor: FileDescriptor, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { descriptor.close() }

    /// Opens the directory at `path` (creating it and its parents when `create`).
    public static func open(_ path: String, create: Bool = false) throws(SystemError) -> Directory {
        if create { try FileSystem.createDirectories(path) }
        let fd = try Sys.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)
        return Directory(descriptor: FileDescriptor(rawValue: fd), path: path)
    }

    /// The directory at `relative` (slash-separated) below this one; missing components are
    /// created (0755) when `create`. No component may be a symlink.
    public func subdirectory(_ relative: String, create: Bool = false) throws(SystemError) -> Directory {
        var current = self
        for component in relative.split(separator: "/") where !component.isEmpty && component != "." {
            current = try current.child(String(component), create: create)
        }
        return current
    }

    private func child(_ name: String, create: Bool) throws(SystemError) -> Directory {
        let full = try fullPath(name)
        do {
            let fd = try Sys.openat(descriptor.rawValue, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0, path: full)
            return Directory(descriptor: FileDescriptor(rawValue: fd), path: full)
        } catch where error.errno == ENOENT && create {
            do {
                try Sys.mkdirat(descriptor.rawValue, name, 0o755, path: full)
            } catch where error.errno == EEXIST {}
            return try child(name, create: false)
        } catch where error.errno == ELOOP {
            throw Self.notFollowed(full, error)
        }
    }

    /// Opens the regular file `name` without following a symlink (`O_NOFOLLOW`); anything but
    /// a regular file (a FIFO, a device, a directory) is refused.
    public func openFile(_ name: String, _ mode: FileDescriptor.AccessMode, create: Bool = false, exclusive: Bool = false,
                         truncate: Bool = false, permissions: mode_t = 0o644) throws(SystemError) -> FileDescriptor {
        let full = try fullPath(name)
        // O_NONBLOCK: opening a FIFO planted here must not hang; it has no effect on regular files.
        var flags = mode.flags | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK
        if create { flags |= O_CREAT }
        if exclusive { flags |= O_EXCL }
        if truncate { flags |= O_TRUNC }
        let fd: FileDescriptor
        do {
            fd = FileDescriptor(rawValue: try Sys.openat(descriptor.rawValue, name, flags, permissions, path: full))
        } catch where error.errno == ELOOP {
            throw Self.notFollowed(full, error)
        }
        do throws(SystemError) {
            guard try fd.info().kind == .regular else { throw SystemError(errno: EINVAL, operation: "open (not a regular file)", path: full) }
        } catch {
            fd.close()
            throw error
        }
        return fd
    }

    /// Opens `name` for reading and writing, creating it (`permissions`) when missing. A
    /// symlink, FIFO or other non-regular entry at `name` was not made by the cache: it is
    /// removed (not what it points to) and a regular file created in its place.
    public func createOrOpenRegular(_ name: String, permissions: mode_t = 0o644) throws(SystemError) -> FileDescriptor {
        do {
            return try openFile(name, .readWrite, create: true, permissions: permissions)
        } catch where error.errno == ELOOP || error.errno == EINVAL {
            guard let existing = try info(name), existing.kind != .regular, existing.kind != .directory else { throw error }
            try remove(name)
            return try openFile(name, .readWrite, create: true, permissions: permissions)
        }
    }

    /// Replaces the file `name` whole and durably: written under a temporary name of this
    /// process, synced, renamed over `name`, the directory synced. A reader sees the old file
    /// or the new one, never a part; a symlink at `name` is replaced, not followed.
    public func replaceFile(_ name: String, with bytes: [UInt8], permissions: mode_t = 0o644) throws(SystemError) {
        let temporary = ".\(name).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = try openFile(temporary, .readWrite, create: true, exclusive: true, permissions: permissions)
        do throws(SystemError) {
            defer { fd.close() }
            try fd.write(bytes, at: 0)
            try fd.sync()
            try rename(temporary, to: self, as: name)
        } catch {
            _ = try? remove(temporary)
            throw error
        }
        try sync()
    }

    /// The contents of the regular file `name` (not followed if a symlink), nil when there is
    /// none; a file larger than `limit` bytes is refused (EFBIG), never read into memory.
    public func readFile(_ name: String, limit: Int) throws(SystemError) -> [UInt8]? {
        let fd: FileDescriptor
        do {
            fd = try openFile(name, .readOnly)
        } catch where error.errno == ENOENT {
            return nil
        }
        defer { fd.close() }
        let size = try fd.info().size
        guard size <= Int64(limit) else { throw SystemError(errno: EFBIG, operation: "read (larger than \(limit) bytes)", path: try fullPath(name)) }
        return try fd.read(count: Int(size), at: 0)
    }

    /// What is at `name` (a symlink is reported as one, not followed); nil when nothing is.
    public func info(_ name: String) throws(SystemError) -> FileInfo? {
        let full = try fullPath(name)
        do {
            return FileInfo(try Sys.statat(descriptor.rawValue, name, path: full))
        } catch where error.errno == ENOENT || error.errno == ENOTDIR {
            return nil
        }
    }

    /// Renames `name` to `newName` in `directory` (atomically replacing what is there).
    public func rename(_ name: String, to directory: Directory, as newName: String) throws(SystemError) {
        try Sys.renameat(descriptor.rawValue, try fullPath(name), directory.descriptor.rawValue, try directory.fullPath(newName),
                         path: "\(path)/\(name) -> \(directory.path)/\(newName)")
    }

    /// Makes `newName` in `directory` another hard link to `name` (which is not followed if a symlink).
    public func link(_ name: String, to directory: Directory, as newName: String) throws(SystemError) {
        try Sys.linkat(descriptor.rawValue, try fullPath(name), directory.descriptor.rawValue, try directory.fullPath(newName),
                       path: "\(path)/\(name) -> \(directory.path)/\(newName)")
    }

    /// Removes the entry `name` (a file or a symlink, never what a symlink points to); false
    /// when there was none.
    @discardableResult
    public func remove(_ name: String) throws(SystemError) -> Bool {
        do {
            try Sys.unlinkat(descriptor.rawValue, name, 0, path: try fullPath(name))
            return true
        } catch where error.errno == ENOENT {
            return false
        }
    }

    /// Removes `name` and, if it is a directory, everything below it, without following a
    /// symlink anywhere (a symlink is removed, not what it points to). False when absent.
    @discardableResult
    public func removeTree(_ name: String) throws(SystemError) -> Bool {
        guard let info = try info(name) else { return false }
        guard info.kind == .directory else { return try remove(name) }
        let child = try subdirectory(name)
        for entry in try child.entries() { try child.removeTree(entry) }
        do {
            try Sys.unlinkat(descriptor.rawValue, name, AT_REMOVEDIR, path: try fullPath(name))
        } catch where error.errno == ENOENT {}
        return true
    }

    /// The names in this directory, without `.` and `..`.
    public func entries() throws(SystemError) -> [String] {
        try Sys.directoryEntries(descriptor.rawValue, path: path)
    }

    /// fsync of the directory itself: the names created, renamed or removed in it are durable.
    public func sync() throws(SystemError) { try Sys.fsync(descriptor.rawValue, operation: "fsync(directory)", path: path) }

    private func fullPath(_ name: String) throws(SystemError) -> String {
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/") else {
            throw SystemError(errno: EINVAL, operation: "a single file name was expected", path: "\(path)/\(name)")
        }
        return path + "/" + name
    }

    private static func notFollowed(_ path: String, _ error: SystemError) -> SystemError {
        SystemError(errno: error.errno, operation: "\(error.operation) (a symlink under MODELS_ROOT is never followed)", path: path)
    }
}
