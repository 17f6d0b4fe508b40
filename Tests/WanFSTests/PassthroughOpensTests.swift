import Foundation
import Glibc
import Testing
import WanCache
import WanTestSupport
@testable import WanFS

/// The kernel's rules for passthrough opens of one inode (fs/fuse/iomode.c), kept without a kernel.
@Suite struct PassthroughOpensTests {
    /// Hands out backing ids 1, 2, ... and records the descriptors it was given.
    final class FakeKernel: @unchecked Sendable {
        var registered: [Int32] = []
        var refuse = false
        func register(_ fd: Int32) -> Int32? {
            if refuse { return nil }
            registered.append(fd)
            return Int32(registered.count)
        }
    }

    @Test func opensOfAnInodeShareOneBackingIDUntilTheLastCloses() {
        let opens = PassthroughOpens(), kernel = FakeKernel()
        #expect(opens.open(handle: 1, ino: 7, backing: 40, register: kernel.register) == .passthrough(backingID: 1))
        #expect(opens.open(handle: 2, ino: 7, backing: 41, register: kernel.register) == .passthrough(backingID: 1),
                "a second backing file for the inode would be EBUSY in the kernel")
        #expect(kernel.registered == [40], "registered once per inode")
        #expect(opens.open(handle: 3, ino: 8, backing: 42, register: kernel.register) == .passthrough(backingID: 2))
        #expect(opens.release(handle: 1) == nil, "handle 2 still uses backing id 1")
        #expect(opens.release(handle: 2) == 1, "the last open of inode 7 gives its id back")
        #expect(opens.release(handle: 2) == nil, "a handle is released once")
        #expect(opens.open(handle: 4, ino: 7, backing: 43, register: kernel.register) == .passthrough(backingID: 3), "a new id after the old one went")
    }

    @Test func aFileOpenWhileItWasFetchedKeepsTheInodeCached() {
        let opens = PassthroughOpens(), kernel = FakeKernel()
        #expect(opens.open(handle: 1, ino: 7, backing: nil, register: kernel.register) == .cached, "partial: the daemon serves it")
        #expect(opens.open(handle: 2, ino: 7, backing: 40, register: kernel.register) == .cached,
                "complete now, but a cached open is still there: passthrough would be ETXTBSY")
        #expect(kernel.registered.isEmpty)
        #expect(opens.release(handle: 1) == nil)
        #expect(opens.release(handle: 2) == nil)
        #expect(opens.open(handle: 3, ino: 7, backing: 40, register: kernel.register) == .passthrough(backingID: 1), "once they closed")
        #expect(opens.open(handle: 4, ino: 7, backing: nil, register: kernel.register) == .passthrough(backingID: 1),
                "while the inode passes through, every open must")
    }

    @Test func aRefusedBackingFileTurnsPassthroughOffForTheMount() {
        let opens = PassthroughOpens(), kernel = FakeKernel()
        kernel.refuse = true
        #expect(opens.open(handle: 1, ino: 7, backing: 40, register: kernel.register) == .cached)
        #expect(opens.refused)
        kernel.refuse = false
        #expect(opens.open(handle: 2, ino: 8, backing: 41, register: kernel.register) == .cached, "not asked again")
        #expect(kernel.registered.isEmpty)
        #expect(opens.release(handle: 1) == nil && opens.release(handle: 2) == nil)
    }

    @Test func theFilesystemOffersTheBlobOfCompleteFilesOnly() throws {
        let s = try WanFileSystemTests.setup()
        let model = try s.fs.lookup(parent: InodeTable.rootInode, name: "fs@1.0")
        let weights = try s.fs.lookup(parent: try s.fs.lookup(parent: model.ino, name: "unet").ino, name: "w.safetensors")
        let kernel = FakeKernel()
        let partial = try s.fs.open(weights.ino, flags: O_RDONLY, register: kernel.register)
        #expect(partial.mode == .cached && kernel.registered.isEmpty, "a partial file is served by the daemon")
        #expect(s.fs.release(handle: partial.handle) == nil)

        let spec = try s.fs.engine.registry.spec("fs@1.0")
        let file = try #require(spec.files.first { $0.path == "unet/w.safetensors" })
        let blob = try s.fs.engine.fetcher(for: file, of: spec).requireComplete(timeout: 60)
        let complete = try s.fs.open(weights.ino, flags: O_RDONLY, register: kernel.register)
        guard case .passthrough(let id) = complete.mode else {
            Issue.record("a complete file should pass through, got \(complete.mode)")
            return
        }
        // The registered descriptor is the blob itself.
        let registered = try #require(kernel.registered.first)
        let target = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(registered)")
        #expect(target == blob)
        #expect(s.fs.release(handle: complete.handle) == id)

        var off = WanFileSystem.Settings()
        off.passthrough = false
        let without = WanFileSystem(engine: s.fs.engine, settings: off)
        let cached = try without.open(weights.ino, flags: O_RDONLY, register: kernel.register)
        #expect(cached.mode == .cached && cached.keepCache, "passthrough=off: cached, with the kernel's page cache kept")
        #expect(kernel.registered.count == 1)
    }
}
