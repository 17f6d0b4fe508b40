import CFuse

/// Facts about the linked libfuse3.
public enum FuseLibrary {
    /// The libfuse package version, e.g. "3.14.0".
    public static var version: String { String(cString: fuse_pkgversion()) }
    /// The numeric FUSE API level, e.g. 314 for 3.14.
    public static var apiVersion: Int { Int(fuse_version()) }
}
