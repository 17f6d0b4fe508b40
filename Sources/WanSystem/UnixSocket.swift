import Foundation
import Glibc

// Unix stream sockets between two processes of this project (a mount handing its FUSE
// connection to the daemon that takes it over). Every raw socket call is in this file; they
// retry EINTR and throw `SystemError`.

/// A connected Unix stream socket carrying framed messages (a 4-byte big-endian length, then
/// the bytes), each optionally with one file descriptor (SCM_RIGHTS).
public final class UnixSocket: @unchecked Sendable {
    // @unchecked: the descriptor is owned here and closed once (deinit); a socket is used by
    // one thread at a time.
    public let descriptor: Int32
    /// The largest message accepted (a hostile or confused peer cannot make us allocate more).
    public static let maxMessage = 64 << 20

    init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { Glibc.close(descriptor) }

    /// Connects to the socket at `path`; nil when nothing listens there (no file, or refused).
    public static func connect(to path: String) throws -> UnixSocket? {
        let fd = try syscall("socket", path: path) { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        let socket = UnixSocket(descriptor: fd)
        do {
            _ = try withAddress(path) { address, length in
                try syscall("connect", path: path) { Glibc.connect(fd, address, length) }
            }
        } catch let error as SystemError where error.errno == ENOENT || error.errno == ECONNREFUSED {
            return nil
        }
        return socket
    }

    /// The peer's user id (SO_PEERCRED).
    public func peerUserID() throws -> uid_t {
        // struct ucred (Glibc's module hides it without _GNU_SOURCE): pid, uid, gid.
        struct Credentials { var pid: Int32 = 0; var uid: UInt32 = 0; var gid: UInt32 = 0 }
        var credentials = Credentials()
        var length = socklen_t(MemoryLayout<Credentials>.size)
        _ = try syscall("getsockopt(SO_PEERCRED)") { getsockopt(descriptor, SOL_SOCKET, SO_PEERCRED, &credentials, &length) }
        return credentials.uid
    }

    /// Sets how long a receive may wait (0: forever).
    public func setReceiveTimeout(seconds: Double) throws {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - seconds.rounded(.down)) * 1e6))
        _ = try syscall("setsockopt(SO_RCVTIMEO)") { setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size)) }
    }

    /// Sends one message, with `passing` as an SCM_RIGHTS descriptor when given.
    public func send(_ message: [UInt8], passing fd: Int32? = nil) throws {
        guard message.count <= Self.maxMessage else { throw SystemError(errno: EMSGSIZE, operation: "send") }
        var frame = withUnsafeBytes(of: UInt32(message.count).bigEndian) { Array($0) }
        frame += message
        var sent = 0
        // The descriptor travels with the first bytes.
        if let fd {
            sent = try sendWithDescriptor(frame, fd)
        }
        while sent < frame.count {
            let count = try frame[sent...].withUnsafeBytes { bytes in
                try syscall("send") { Glibc.send(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
            }
            sent += count
        }
    }

    private func sendWithDescriptor(_ frame: [UInt8], _ fd: Int32) throws -> Int {
        var frame = frame
        return try frame.withUnsafeMutableBytes { bytes in
            try withMessageHeader(bytes, passing: fd) { header in
                try syscall("sendmsg(SCM_RIGHTS)") { Glibc.sendmsg(descriptor, &header, Int32(MSG_NOSIGNAL)) }
            }
        }
    }

    /// Receives one message and the descriptor that came with it (the caller owns it).
    /// Throws ECONNRESET when the peer closed before a whole message arrived.
    public func receive() throws -> (message: [UInt8], descriptor: Int32?) {
        var passed: Int32?
        var lengthBytes = [UInt8](repeating: 0, count: 4)
        try receiveExactly(&lengthBytes, descriptor: &passed)
        let length = lengthBytes.reduce(0) { $0 << 8 | Int($1) }
        guard length <= Self.maxMessage else {
            if let passed { Glibc.close(passed) }
            throw SystemError(errno: EMSGSIZE, operation: "receive")
        }
        var message = [UInt8](repeating: 0, count: length)
        do {
            try receiveExactly(&message, descriptor: &passed)
        } catch {
            if let passed { Glibc.close(passed) }
            throw error
        }
        return (message, passed)
    }

    private func receiveExactly(_ buffer: inout [UInt8], descriptor passed: inout Int32?) throws {
        var received = 0
        while received < buffer.count {
            let (count, fd): (Int, Int32?) = try buffer[received...].withUnsafeMutableBytes { bytes in
                try withMessageHeader(bytes, receiving: true) { header in
                    let count = try syscall("recvmsg") { Glibc.recvmsg(descriptor, &header, Int32(MSG_CMSG_CLOEXEC)) }
                    return (count, passedDescriptor(header))
                }
            }
            if let fd {
                if passed == nil { passed = fd } else { Glibc.close(fd) }
            }
            if count == 0 { throw SystemError(errno: ECONNRESET, operation: "recvmsg") }
            received += count
        }
    }

}

/// A listening Unix stream socket at a path, readable and writable only by its owner.
public final class UnixListener: @unchecked Sendable {
    // @unchecked: the descriptor is owned here; `accept` may run on one thread while another
    // closes (close makes accept fail, which ends the accepting loop).
    public let descriptor: Int32
    public let path: String

    /// Binds a new socket at `path` (replacing a stale file there) and listens.
    public init(path: String) throws {
        self.path = path
        descriptor = try syscall("socket", path: path) { Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do {
            if Glibc.unlink(path) != 0 && errno != ENOENT { throw SystemError(errno: errno, operation: "unlink", path: path) }
            _ = try withAddress(path) { address, length in
                try syscall("bind", path: path) { Glibc.bind(descriptor, address, length) }
            }
            // Owner only before anyone may connect (umask is the whole process's: not that).
            _ = try syscall("chmod", path: path) { Glibc.chmod(path, 0o600) }
            _ = try syscall("listen", path: path) { Glibc.listen(descriptor, 8) }
        } catch {
            Glibc.close(descriptor)
            throw error
        }
    }

    /// Waits for the next connection; throws once the listener is shut down.
    public func accept() throws -> UnixSocket {
        let fd = try syscall("accept", path: path) { Glibc.accept(descriptor, nil, nil) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return UnixSocket(descriptor: fd)
    }

    /// Makes a waiting `accept` fail (the accepting loop ends); the file stays.
    public func shutdown() { Glibc.shutdown(descriptor, Int32(SHUT_RDWR)) }

    deinit { Glibc.close(descriptor) }
}

/// Calls `body` with a sockaddr_un for `path`. A path longer than sun_path holds is reached
/// through its directory's descriptor (/proc/self/fd/N/NAME), which Linux resolves.
private func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> T) throws -> T {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    var name = path
    var directory: Int32 = -1
    defer { if directory >= 0 { Glibc.close(directory) } }
    if path.utf8.count >= capacity {
        let slash = path.lastIndex(of: "/") ?? path.startIndex
        let folder = String(path[..<slash])
        directory = try syscall("open", path: folder) { Glibc.open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        name = "/proc/self/fd/\(directory)/" + path[path.index(after: slash)...]
        guard name.utf8.count < capacity else { throw SystemError(errno: ENAMETOOLONG, operation: "bind", path: path) }
    }
    let bytes = Array(name.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    return try withUnsafePointer(to: &address) { pointer -> T in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer -> T in
            try body(sockaddrPointer, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
}

/// systemd's notification socket (`$NOTIFY_SOCKET`, sd_notify(3)): "READY=1", "MAINPID=N",
/// "FDSTORE=1" with a descriptor for systemd to keep across restarts of the service.
public enum SystemdNotify {
    /// Whether systemd asked for notifications.
    public static var isExpected: Bool { !(ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] ?? "").isEmpty }

    /// Sends `state` (and `descriptor`, SCM_RIGHTS) when systemd asked for notifications;
    /// false when it did not or the send failed.
    @discardableResult
    public static func send(_ state: String, descriptor: Int32? = nil,
                            environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        guard let target = environment["NOTIFY_SOCKET"], !target.isEmpty else { return false }
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var path = Array(target.utf8)
        if path.first == UInt8(ascii: "@") { path[0] = 0 }   // an abstract socket
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + path.count + (path.first == 0 ? 0 : 1))
        var message = Array(state.utf8)
        let sent = message.withUnsafeMutableBytes { bytes in
            withUnsafeMutablePointer(to: &address) { addressPointer in
                withMessageHeader(bytes, passing: descriptor) { header in
                    header.msg_name = UnsafeMutableRawPointer(addressPointer)
                    header.msg_namelen = length
                    return Glibc.sendmsg(fd, &header, Int32(MSG_NOSIGNAL))
                }
            }
        }
        return sent == message.count
    }

    /// The descriptor systemd passed under `name` (LISTEN_FDS / LISTEN_FDNAMES, for this
    /// process), if any.
    public static func passedDescriptor(named name: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> Int32? {
        guard environment["LISTEN_PID"].flatMap({ Int32($0) }) == getpid(),
              let count = environment["LISTEN_FDS"].flatMap({ Int($0) }), count > 0, count < 1024 else { return nil }
        let names = (environment["LISTEN_FDNAMES"] ?? "").split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard let index = names.prefix(count).firstIndex(of: name) else { return nil }
        return 3 + Int32(index)
    }
}

/// A msghdr over `bytes` for `body`, with room for one SCM_RIGHTS descriptor when sending
/// `passing` or when `receiving` (sendmsg/recvmsg take the same header).
private func withMessageHeader<T>(_ bytes: UnsafeMutableRawBufferPointer, passing fd: Int32? = nil, receiving: Bool = false,
                                  _ body: (inout msghdr) throws -> T) rethrows -> T {
    let controlLength = fd != nil || receiving ? cmsgSpace(MemoryLayout<Int32>.size) : 0
    var control = [UInt8](repeating: 0, count: max(controlLength, 1))
    return try control.withUnsafeMutableBytes { controlBytes in
        var vector = iovec(iov_base: bytes.baseAddress, iov_len: bytes.count)
        return try withUnsafeMutablePointer(to: &vector) { vectorPointer in
            var header = msghdr()
            header.msg_iov = vectorPointer
            header.msg_iovlen = 1
            if controlLength > 0 {
                header.msg_control = controlBytes.baseAddress
                header.msg_controllen = controlLength
            }
            if let fd, let base = controlBytes.baseAddress {
                let cmsg = base.assumingMemoryBound(to: cmsghdr.self)
                cmsg.pointee.cmsg_level = SOL_SOCKET
                cmsg.pointee.cmsg_type = Int32(SCM_RIGHTS)
                cmsg.pointee.cmsg_len = cmsgSpace(0) + MemoryLayout<Int32>.size
                (base + cmsgSpace(0)).storeBytes(of: fd, as: Int32.self)
            }
            return try body(&header)
        }
    }
}

/// The SCM_RIGHTS descriptor a received header carries, if any.
private func passedDescriptor(_ header: msghdr) -> Int32? {
    guard header.msg_controllen >= cmsgSpace(0) + MemoryLayout<Int32>.size, let base = header.msg_control else { return nil }
    let cmsg = base.assumingMemoryBound(to: cmsghdr.self)
    guard cmsg.pointee.cmsg_level == SOL_SOCKET && cmsg.pointee.cmsg_type == Int32(SCM_RIGHTS) else { return nil }
    return (base + cmsgSpace(0)).load(as: Int32.self)
}

private func cmsgSpace(_ length: Int) -> Int {
    let align = MemoryLayout<Int>.size
    let header = (MemoryLayout<cmsghdr>.size + align - 1) & ~(align - 1)
    return header + ((length + align - 1) & ~(align - 1))
}
