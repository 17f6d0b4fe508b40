import Foundation
import Synchronization
import Testing
import WanTestSupport

/// The whole-file sha256 of what readers fetched (files with chunk digests: every byte served
/// was verified already) waits while the mount is fetching, so a load keeps the CPU; the file
/// is committed once fetching stops. On a real mount: one model from nginx, one from a source
/// that trickles (the fault server at 1 MB/s), which keeps the mount fetching.
@Suite struct DeferredDigestMountTests {
    @Test func aFileReadWhileTheMountFetchesIsCommittedOnceFetchingStops() throws {
        let prefix = TestServers.uniqueName("deferred")
        let done = ModelFixture(modelID: "done@1.0", sizes: [("a.bin", 8 << 20)], chunkSize: 1 << 20, seed: 31)
        let slow = ModelFixture(modelID: "slow@1.0", sizes: [("b.bin", 4 << 20)], chunkSize: 1 << 20, seed: 32)
        for file in done.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        for file in slow.files { try TestServers.putFault("\(prefix)/\(file.path)", file.data) }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let faults = try TestServers.value("WAN_TEST_FAULTS")
        let mount = try MountFixture(manifest: ModelFixture.manifest([
            done.manifestEntry(sources: ["\(http)/\(prefix)"]),
            slow.manifestEntry(sources: ["\(faults)/slow;bps=1000000/\(prefix)"]),
        ]), label: "wan-deferred")
        try mount.mount()
        defer { try? mount.unmount() }

        // The slow file is read in the background: about 4 s of fetching.
        let slowDigest = Mutex<String?>(nil)
        let slowFinished = DispatchSemaphore(value: 0)
        let slowPath = mount.path("slow@1.0", "b.bin")
        Thread.detachNewThread {
            slowDigest.withLock { $0 = try? sha256sum(slowPath) }
            slowFinished.signal()
        }
        Thread.sleep(forTimeInterval: 0.3)
        let path = mount.path("done@1.0", "a.bin")
        #expect(try sha256sum(path) == done.files[0].sha256, "served verified chunk by chunk")
        Thread.sleep(forTimeInterval: 1)
        let whileFetching = try xattr(path, "user.wan.state")
        #expect(slowFinished.wait(timeout: .now()) == .timedOut, "the slow file was still being fetched when a.bin was looked at")
        #expect(whileFetching != "COMPLETE", "a.bin was committed while the mount fetched: its digest did not wait")

        #expect(slowFinished.wait(timeout: .now() + 30) == .success)
        #expect(slowDigest.withLock { $0 } == slow.files[0].sha256)
        // Fetching has stopped: both digests run (250 ms of quiet, then about 10 ms of hashing).
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try xattr(path, "user.wan.state") != "COMPLETE" { Thread.sleep(forTimeInterval: 0.1) }
        #expect(try xattr(path, "user.wan.state") == "COMPLETE")
        #expect(try xattr(slowPath, "user.wan.state") == "COMPLETE")
        try? FileManager.default.removeItem(atPath: try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix)
    }
}
