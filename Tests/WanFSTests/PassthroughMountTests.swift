import Foundation
import Glibc
import Testing
import WanFS
import WanTestSupport

extension MountTests {
    /// Reads all of `fd` on another thread; whether it finished within `seconds`, and the bytes.
    static func readAll(_ fd: Int32, size: Int, within seconds: Double) -> (finished: Bool, wait: () -> Data) {
        let done = DispatchSemaphore(value: 0)
        let box = DataBox()
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: size)
            var got = 0
            while got < size {
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, size - got, off_t(got)) }
                if n <= 0 { break }
                got += n
            }
            box.data = Data(buffer[0..<got])
            done.signal()
        }
        let finished = done.wait(timeout: .now() + seconds) == .success
        return (finished, { if !finished { done.wait() }; return box.data })
    }

    final class DataBox: @unchecked Sendable { var data = Data() }

    /// Drops the cached pages of a file (the kernel's page cache), as `echo 1 > drop_caches` would for it alone.
    static func dropPages(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw TestEnvironmentError("open \(path): errno \(errno)") }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    }

    /// With FUSE passthrough the kernel reads a complete file straight from its blob: a read
    /// (and an mmap) of it needs no daemon, so it completes while the daemon is stopped.
    /// With `passthrough=off` the same read waits for the daemon.
    @Test(arguments: [true, false]) func completeFilesAreReadByTheKernelFromTheirBlobs(passthrough: Bool) throws {
        let size = 8 << 20
        let (mount, model, _) = try Self.nginxModel(passthrough ? "ptk" : "ptd", sizes: [("w.bin", size)], chunkSize: 1 << 20,
                                                    options: passthrough ? "" : "passthrough=off")
        let id = passthrough ? "ptk@1.0" : "ptd@1.0"
        let file = mount.path(id, "w.bin"), expected = model.file("w.bin").data
        #expect(try sha256sum(file) == model.file("w.bin").sha256, "cold read")
        let deadline = Date().addingTimeInterval(30)
        while (try? xattr(file, "user.wan.state")) != "COMPLETE" && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try xattr(file, "user.wan.state") == "COMPLETE")

        let available = FuseLibrary.hasPassthrough && getuid() == 0
        #expect(try mount.mountInfo()["passthrough"] as? Bool == (passthrough && available),
                "mount.json says whether the kernel serves complete files (libfuse \(FuseLibrary.version), uid \(getuid()))")
        let (_, status) = try mount.wan(["models", "status", "--mount", mount.mountpoint])
        #expect((status["mount"] as? [String: Any])?["passthrough"] as? Bool == (passthrough && available), "status --mount --json says it too")
        if passthrough && !available { return }   // WAN_LIBFUSE=system or not root: nothing more to see

        let fd = open(file, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        let mapping = try #require(mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0))
        try #require(mapping != UnsafeMutableRawPointer(bitPattern: -1), "mmap: errno \(errno)")
        defer { munmap(mapping, size) }
        try Self.dropPages(file)
        try Self.dropPages(mount.root + "/wan22/\(id)/w.bin")   // a hard link of the blob
        let daemon = try #require(mount.pid)
        kill(daemon, SIGSTOP)
        let stopped = Date()
        var resumed = false
        defer { if !resumed { kill(daemon, SIGCONT) } }
        let (finished, wait) = Self.readAll(fd, size: size, within: passthrough ? 20 : 1.5)
        if passthrough {
            #expect(finished, "read(2) of a complete file must not need the (stopped) daemon")
            let mapped = Data(bytes: mapping, count: size) == expected   // page faults, served from the blob as well
            #expect(mapped, "mmap through passthrough")
            #expect(Date().timeIntervalSince(stopped) < 20)
        } else {
            #expect(!finished, "passthrough=off: the read waits for the daemon")
        }
        kill(daemon, SIGCONT)
        resumed = true
        let read = wait() == expected
        #expect(read, "the bytes read are the file's")
    }

    /// With `direct_io=auto` an open of a file still being fetched skips the mount's page
    /// cache: reading a range again goes to the daemon (so it waits while the daemon is
    /// stopped), and a MAP_SHARED mmap of that open still works. With `direct_io=off` the
    /// second read is a page-cache hit.
    @Test(arguments: [true, false]) func partialFilesAreReadWithDirectIO(direct: Bool) throws {
        let size = 8 << 20, head = 2 << 20
        let label = direct ? "dio" : "dic"
        let (mount, model, _) = try Self.nginxModel(label, sizes: [("w.bin", size)], chunkSize: 1 << 20,
                                                    options: "prefetch=off" + (direct ? "" : ",direct_io=off"))
        let file = mount.path("\(label)@1.0", "w.bin"), expected = model.file("w.bin").data
        let allowed = FuseLibrary.hasDirectIOWithMmap   // libfuse >= 3.16; the kernel (>= 6.6) is assumed
        #expect(try mount.mountInfo()["direct_io"] as? Bool == (direct && allowed), "mount.json says whether partial opens are direct")
        if direct && !allowed { return }   // WAN_LIBFUSE=system (3.14): nothing more to see
        let fd = open(file, O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        let first = Self.readAll(fd, size: head, within: 30)
        #expect(first.finished)
        let firstBytes = first.wait() == expected.prefix(head)
        #expect(firstBytes, "the bytes read are the file's")
        #expect(try xattr(file, "user.wan.state") == "PARTIAL", "prefetch=off: the rest is not fetched")

        let mapping = try #require(mmap(nil, head, PROT_READ, MAP_SHARED, fd, 0))
        try #require(mapping != UnsafeMutableRawPointer(bitPattern: -1), "mmap of a partial open: errno \(errno)")
        let mapped = Data(bytes: mapping, count: head) == expected.prefix(head)
        munmap(mapping, head)
        #expect(mapped, "mmap of the open")

        let daemon = try #require(mount.pid)
        kill(daemon, SIGSTOP)
        var resumed = false
        defer { if !resumed { kill(daemon, SIGCONT) } }
        let again = Self.readAll(fd, size: head, within: direct ? 1.5 : 20)
        if direct {
            #expect(!again.finished, "direct_io=auto: the re-read goes to the (stopped) daemon")
        } else {
            #expect(again.finished, "direct_io=off: the re-read is served from the mount's page cache")
        }
        kill(daemon, SIGCONT)
        resumed = true
        let reread = again.wait() == expected.prefix(head)
        #expect(reread, "the bytes read again are the file's")
    }
}
