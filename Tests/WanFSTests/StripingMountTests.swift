import Foundation
import Testing
import WanTestSupport

/// Two sources at once, on real mounts (counted at the origins): a cold file's range requests
/// are spread over both; a slow source gets less work; a source that freezes mid-read is left
/// for the other long before its stall timeout, and the reader never sees an error.
@Suite(.serialized) struct StripingMountTests {
    /// Body bytes nginx sent for `prefix`'s files under `/` (not `/mirror/`) and under `/mirror/`.
    static func servedByEach(_ prefix: String, after count: Int = 0) throws -> (direct: Int64, mirror: Int64) {
        let requests = Array(try TestServers.nginxRequests(containing: "/\(prefix)/").dropFirst(count))
        let mirror = requests.filter { $0.uri.hasPrefix("/mirror/") }.reduce(Int64(0)) { $0 + $1.bytes }
        let direct = requests.filter { !$0.uri.hasPrefix("/mirror/") }.reduce(Int64(0)) { $0 + $1.bytes }
        return (direct, mirror)
    }

    @Test func aColdFileIsFetchedFromBothSourcesAndOnlyFromTheFirstWithStripingOff() throws {
        let prefix = TestServers.uniqueName("striped")
        let model = ModelFixture(modelID: "striped@1.0", sizes: [("w.bin", 128 << 20)], chunkSize: 1 << 20, seed: 21)
        for file in model.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let mount = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["\(http)/\(prefix)", "\(http)/mirror/\(prefix)"])]),
                                     label: "wan-striped")
        try mount.mount()
        let path = mount.path("striped@1.0", "w.bin")
        #expect(try sha256sum(path) == model.files[0].sha256)
        Thread.sleep(forTimeInterval: 1)
        let size = Int64(model.files[0].size)
        let striped = try Self.servedByEach(prefix)
        #expect(striped.direct + striped.mirror <= size + size / 50, "served \(striped) for \(size)")
        #expect(striped.direct >= size / 5 && striped.mirror >= size / 5, "each source should serve a share: \(striped)")
        try mount.unmount()

        // stripe=off: the manifest's order, one source at a time.
        try FileManager.default.removeItem(atPath: mount.root)
        let before = try TestServers.nginxRequests(containing: "/\(prefix)/").count
        try mount.mount("stripe=off")
        #expect(try sha256sum(path) == model.files[0].sha256)
        Thread.sleep(forTimeInterval: 1)
        let ordered = try Self.servedByEach(prefix, after: before)
        #expect(ordered.mirror == 0 && ordered.direct >= size, "stripe=off served \(ordered)")
        try mount.unmount()
        try? FileManager.default.removeItem(atPath: try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix)
    }

    @Test func aSlowSourceGetsLessWorkAndAFrozenOneIsLeftWithoutAnError() throws {
        let prefix = TestServers.uniqueName("frozen")
        let model = ModelFixture(modelID: "frozen@1.0", sizes: [("w.bin", 96 << 20)], chunkSize: 1 << 20, seed: 22)
        for file in model.files {
            try TestServers.putFault("\(prefix)/\(file.path)", file.data)
            try TestServers.putHTTP("\(prefix)/\(file.path)", file.data)
        }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let faults = try TestServers.value("WAN_TEST_FAULTS")
        let size = Int64(model.files[0].size)
        let path = "w.bin"

        // A source that answers and then stops sending, listed first, with the default 30 s
        // stall timeout: the read must not wait for it.
        let frozen = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["\(faults)/freeze/\(prefix)", "\(http)/\(prefix)"])]),
                                      label: "wan-frozen")
        try frozen.mount()
        let started = Date()
        let digest = try sha256sum(frozen.path("frozen@1.0", path))
        let seconds = Date().timeIntervalSince(started)
        #expect(digest == model.files[0].sha256, "a read across a frozen source: wrong bytes or an error")
        #expect(seconds < 20, "the read took \(seconds) s: it waited for the frozen source's stall timeout")
        let stats = try TestServers.faultStats()
        let asked = stats.filter { $0.key.contains("/freeze/\(prefix)/") }.values.reduce(0) { $0 + $1.requests }
        #expect(asked >= 1, "the frozen source was never asked: \(stats.keys.filter { $0.contains(prefix) })")
        try frozen.unmount()

        // A source at 2 MB/s per request beside nginx: it serves a small share, and the read
        // takes about what nginx alone would (not what the slow source would: 48 s).
        let slow = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["\(faults)/slow;bps=2000000/\(prefix)", "\(http)/\(prefix)"])]),
                                    label: "wan-slow")
        try slow.mount()
        let before = try TestServers.faultStats().filter { $0.key.contains("/slow/\(prefix)/") }.values.reduce(Int64(0)) { $0 + $1.bytes }
        let slowStarted = Date()
        #expect(try sha256sum(slow.path("frozen@1.0", path)) == model.files[0].sha256)
        let slowSeconds = Date().timeIntervalSince(slowStarted)
        Thread.sleep(forTimeInterval: 1)
        let slowServed = try TestServers.faultStats().filter { $0.key.contains("/slow/\(prefix)/") }.values.reduce(Int64(0)) { $0 + $1.bytes } - before
        #expect(slowServed < size / 4, "the slow source served \(slowServed) of \(size)")
        #expect(slowSeconds < 20, "the read took \(slowSeconds) s")
        try slow.unmount()
        try? FileManager.default.removeItem(atPath: try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix)
    }
}
