import Foundation
import Glibc

/// Becoming a daemon the way mount(8) helpers do: the parent waits until the child reports
/// that it is ready (or why it failed) and exits with that outcome.
///
/// Fork only before any thread exists: the child continues with a copy of the parent's
/// memory but only the calling thread.
public enum Daemon {
    /// The child's end of the readiness pipe.
    public struct Notifier: Sendable {
        let fd: Int32

        /// Reports success (`nil`) or failure (a message) to the waiting parent, once.
        public func report(_ failure: String?) {
            let line = failure.map { "ERR " + $0.replacingOccurrences(of: "\n", with: " ") } ?? "OK"
            let bytes = Array((line + "\n").utf8)
            bytes.withUnsafeBytes { _ = try? Sys.write(fd, $0) }
            Sys.close(fd)
        }
    }

    public enum Role {
        /// In the parent: the child's report (nil when it said OK), or "exited without reporting".
        case parent(failure: String?)
        /// In the child, detached from the terminal: report readiness through the notifier.
        case child(Notifier)
    }

    /// Forks. The parent blocks until the child reports; the child starts a new session and
    /// sends stdin to /dev/null and stdout/stderr to `logPath`. Of the descriptors above 2 the
    /// child keeps only `keeping`.
    public static func detach(logPath: String, keeping: [Int32] = []) throws(SystemError) -> Role {
        let (readEnd, writeEnd) = try Sys.pipe()
        let pid = try Sys.fork()
        if pid == 0 {
            Sys.close(readEnd)
            Sys.setsid()
            let null = Glibc.open("/dev/null", O_RDWR)
            let log = Glibc.open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if null >= 0 { try? Sys.dup2(null, 0) }
            let out = log >= 0 ? log : null
            if out >= 0 {
                try? Sys.dup2(out, 1)
                try? Sys.dup2(out, 2)
            }
            closeInheritedDescriptors(keeping: Set(keeping + [writeEnd]))
            return .child(Notifier(fd: writeEnd))
        }
        Sys.close(writeEnd)
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            let n = buffer.withUnsafeMutableBytes { (try? Sys.read(readEnd, $0)) ?? 0 }
            if n <= 0 { break }
            received += buffer[0..<n]
            if received.contains(UInt8(ascii: "\n")) { break }
        }
        Sys.close(readEnd)
        let line = String(decoding: received, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if line == "OK" { return .parent(failure: nil) }
        if line.hasPrefix("ERR ") { return .parent(failure: String(line.dropFirst(4))) }
        return .parent(failure: "the mount process exited before it was ready (see \(logPath))")
    }

    /// Closes every descriptor above 2 but `kept`: a daemon must not hold its launcher's pipes
    /// or sockets open (a caller waiting for EOF, or Foundation's Process watching its child
    /// through a socket, would wait for the daemon's whole life).
    private static func closeInheritedDescriptors(keeping kept: Set<Int32>) {
        Spawn.closeDescriptors(keeping: kept)
    }
}
