import Glibc
import WanCore

/// A failed system call: which one, on what, and the errno it returned.
public struct SystemError: CodedError, Equatable {
    public let errno: Int32
    public let operation: String
    public let path: String?

    public init(errno: Int32, operation: String, path: String? = nil) {
        self.errno = errno
        self.operation = operation
        self.path = path
    }

    public var code: ErrorCode { errno == ENOSPC || errno == EDQUOT ? .noSpace : .ioError }

    public var description: String {
        let target = path.map { " \($0)" } ?? ""
        return "\(operation)\(target): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}
