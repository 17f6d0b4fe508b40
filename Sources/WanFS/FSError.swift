import Glibc

/// A filesystem error: what the kernel gets back, as an errno.
public struct FSError: Error, Equatable, Sendable, CustomStringConvertible {
    public let errno: Int32
    /// Why, for the log (never sent to the kernel).
    public let reason: String

    public init(_ errno: Int32, _ reason: String = "") {
        self.errno = errno
        self.reason = reason
    }

    public static let notFound = FSError(ENOENT)
    public static let readOnly = FSError(EROFS)
    public static let notDirectory = FSError(ENOTDIR)
    public static let isDirectory = FSError(EISDIR)
    public static let noAttribute = FSError(ENODATA)
    public static let badHandle = FSError(EBADF)

    public static func io(_ reason: String) -> FSError { FSError(EIO, reason) }

    public var description: String {
        String(cString: strerror(errno)) + (reason.isEmpty ? "" : ": \(reason)")
    }
}
