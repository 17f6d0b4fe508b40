import CFuse

/// Facts about the linked libfuse3.
public enum FuseLibrary {
    /// The libfuse package version, e.g. "3.14.0".
    public static var version: String { String(cString: fuse_pkgversion()) }
    /// The numeric FUSE API level, e.g. 314 for 3.14.
    public static var apiVersion: Int { Int(fuse_version()) }
}

extension FuseLibrary {
    /// Whether this build can ask the kernel for FUSE passthrough (built against libfuse >= 3.17).
    public static var hasPassthrough: Bool { wan_fuse_passthrough_built() != 0 }
}

extension FuseLibrary {
    /// Whether this build can ask the kernel to allow mmap of direct-I/O opens (libfuse >= 3.16),
    /// which `direct_io=auto` needs before it opens files still being fetched for direct I/O.
    public static var hasDirectIOWithMmap: Bool { wan_fuse_direct_io_mmap_built() != 0 }
}
