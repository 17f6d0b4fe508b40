import Glibc

/// An open file, owned by the caller: close it exactly once (``close()``).
///
/// Reads and writes are positional (`pread`/`pwrite`) and loop until the whole buffer is
/// done, so callers never see a short transfer except at end of file.
public struct FileDescriptor: Sendable, Hashable {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public enum AccessMode: Sendable {
        case readOnly, writeOnly, readWrite
        var flags: Int32 {
            switch self {
            case .readOnly: O_RDONLY
            case .writeOnly: O_WRONLY
            case .readWrite: O_RDWR
            }
        }
    }

    /// Opens `path`. `create` makes the file (with `permissions`) if missing; `exclusive`
    /// fails with EEXIST if it exists.
    public static func open(_ path: String, _ mode: AccessMode, create: Bool = false, exclusive: Bool = false,
                            truncate: Bool = false, permissions: mode_t = 0o644) throws(SystemError) -> FileDescriptor {
        var flags = mode.flags | O_CLOEXEC
        if create { flags |= O_CREAT }
        if exclusive { flags |= O_EXCL }
        if truncate { flags |= O_TRUNC }
        return FileDescriptor(rawValue: try Sys.open(path, flags, permissions))
    }

    public func close() { Sys.close(rawValue) }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws(SystemError) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try Sys.pread(rawValue, UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), offset + Int64(done))
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads up to `count` bytes at `offset` into a new array (shorter at end of file).
    public func read(count: Int, at offset: Int64) throws(SystemError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let result = bytes.withUnsafeMutableBytes { buffer -> Result<Int, SystemError> in
            do throws(SystemError) { return .success(try read(into: buffer, at: offset)) } catch { return .failure(error) }
        }
        bytes.removeSubrange(try result.get()...)
        return bytes
    }

    /// Writes all of `buffer` at `offset`.
    public func write(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            let n = try Sys.pwrite(rawValue, UnsafeRawBufferPointer(rebasing: buffer[done...]), offset + Int64(done))
            done += n
        }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: [UInt8], at offset: Int64) throws(SystemError) {
        let failure = bytes.withUnsafeBytes { buffer -> SystemError? in
            do throws(SystemError) { try write(buffer, at: offset); return nil } catch { return error }
        }
        if let failure { throw failure }
    }

    public func sync() throws(SystemError) { try Sys.fsync(rawValue) }

    /// fdatasync: the data (and the size), without other metadata.
    public func syncData() throws(SystemError) { try Sys.fdatasync(rawValue) }

    public func setPermissions(_ mode: mode_t) throws(SystemError) { try Sys.fchmod(rawValue, mode) }

    public func truncate(to length: Int64) throws(SystemError) { try Sys.ftruncate(rawValue, length) }

    public func info() throws(SystemError) -> FileInfo { FileInfo(try Sys.fileStatus(rawValue)) }

    /// Takes an flock lock. With `wait == false` it returns false instead of blocking when
    /// another open file description holds a conflicting lock.
    public func lock(exclusive: Bool, wait: Bool) throws(SystemError) -> Bool {
        let operation = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)
        do {
            try Sys.lock(rawValue, operation)
            return true
        } catch where error.errno == EWOULDBLOCK {
            return false
        }
    }

    public func unlock() throws(SystemError) { try Sys.lock(rawValue, LOCK_UN) }
}

/// The parts of `struct stat` the project uses.
public struct FileInfo: Sendable, Hashable {
    public enum Kind: Sendable { case regular, directory, symlink, other }

    public let kind: Kind
    /// Apparent size in bytes.
    public let size: Int64
    /// Bytes actually allocated on disk (sparse files have fewer).
    public let allocatedBytes: Int64
    public let device: UInt64
    public let inode: UInt64
    public let linkCount: UInt64
    /// Last modification, seconds since 1970.
    public let modified: Double
    /// Last access, seconds since 1970.
    public let accessed: Double
    public let mode: UInt32

    init(_ s: stat) {
        switch s.st_mode & S_IFMT {
        case S_IFREG: kind = .regular
        case S_IFDIR: kind = .directory
        case S_IFLNK: kind = .symlink
        default: kind = .other
        }
        size = Int64(s.st_size)
        allocatedBytes = Int64(s.st_blocks) * 512
        device = UInt64(s.st_dev)
        inode = UInt64(s.st_ino)
        linkCount = UInt64(s.st_nlink)
        modified = Double(s.st_mtim.tv_sec) + Double(s.st_mtim.tv_nsec) / 1e9
        accessed = Double(s.st_atim.tv_sec) + Double(s.st_atim.tv_nsec) / 1e9
        mode = UInt32(s.st_mode)
    }
}

extension FileInfo {
    /// Which file this is: the same pair means the same file, whatever its names.
    public var identity: FileIdentity { FileIdentity(device: device, inode: inode) }
}

/// A file's device and inode numbers.
public struct FileIdentity: Sendable, Hashable, CustomStringConvertible {
    public let device: UInt64
    public let inode: UInt64
    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
    public var description: String { "\(device):\(inode)" }
}

/// Space on the filesystem holding a path.
public struct FileSystemSpace: Sendable, Hashable, Codable {
    public let totalBytes: Int64
    public let freeBytes: Int64
    /// Free bytes an unprivileged process may use.
    public let availableBytes: Int64

    enum CodingKeys: String, CodingKey {
        case totalBytes = "total_bytes"
        case freeBytes = "free_bytes"
        case availableBytes = "available_bytes"
    }
}

/// Path-level file operations.
public enum FileSystem {
    /// `stat` (or `lstat` when not following symlinks); nil when the path does not exist.
    public static func info(_ path: String, followSymlinks: Bool = true) throws(SystemError) -> FileInfo? {
        do {
            return FileInfo(try Sys.pathStatus(path, followSymlinks: followSymlinks))
        } catch where error.errno == ENOENT || error.errno == ENOTDIR {
            return nil
        }
    }

    /// Space on the filesystem holding `path` (statvfs).
    public static func space(at path: String) throws(SystemError) -> FileSystemSpace {
        let s = try Sys.filesystemStatus(path)
        let unit = Int64(s.f_frsize)
        return FileSystemSpace(totalBytes: Int64(s.f_blocks) * unit, freeBytes: Int64(s.f_bfree) * unit,
                               availableBytes: Int64(s.f_bavail) * unit)
    }

    /// Creates `path` and its missing parents.
    public static func createDirectories(_ path: String, permissions: mode_t = 0o755) throws(SystemError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            do {
                try Sys.mkdir(current, permissions)
            } catch where error.errno == EEXIST {
                continue
            }
        }
    }

    public static func rename(_ from: String, to: String) throws(SystemError) { try Sys.rename(from, to) }
    public static func link(_ existing: String, to newPath: String) throws(SystemError) { try Sys.link(existing, newPath) }
    public static func unlink(_ path: String) throws(SystemError) { try Sys.unlink(path) }

    /// Whether the process may access `path` with `mode` (R_OK, W_OK, X_OK).
    public static func isAccessible(_ path: String, mode: Int32) -> Bool { Sys.access(path, mode) }
}

extension FileSystem {
    /// The canonical absolute path with every symlink resolved; nil when it does not exist.
    public static func realPath(_ path: String) throws(SystemError) -> String? {
        guard let resolved = Glibc.realpath(path, nil) else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { return nil }
            throw SystemError(errno: code, operation: "realpath", path: path)
        }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
