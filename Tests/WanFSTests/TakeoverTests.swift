import Foundation
import Testing
import WanTestSupport

/// `mount.wanfs ... -o takeover`: a new daemon takes the running mount's FUSE connection (an
/// upgrade or a restart) while readers in other processes keep files open and mapped.
@Suite(.serialized)
struct TakeoverTests {
    /// A reader of Tests/clients/takeover_reader.py in its own process, once its file is open.
    final class Reader {
        let process = Process()
        let lines: LineReader
        private let input = Pipe()

        init(_ mode: String, _ path: String, _ extra: [String] = []) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", TestServers.repositoryRoot + "/Tests/clients/takeover_reader.py", mode, path] + extra
            let output = Pipe()
            process.standardOutput = output
            process.standardInput = input
            lines = LineReader(output.fileHandleForReading)
            try process.run()
            guard lines.next(timeout: 60) == "open" else { throw TestEnvironmentError("\(mode) reader of \(path) did not open it") }
        }

        func go() { input.fileHandleForWriting.write(Data("go\n".utf8)) }

        /// The reader's JSON report.
        func report(timeout: Double = 120) throws -> [String: Any] {
            let line = try #require(lines.next(timeout: timeout), "no report from \(process.arguments ?? [])")
            process.waitUntilExit()
            return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
    }

    static func takeover(_ mount: MountFixture, _ options: String = "") throws -> Shell.Result {
        try Shell.run(BuiltProducts.path("mount.wanfs"), [mount.root, mount.mountpoint, "-o", "takeover" + (options.isEmpty ? "" : "," + options)],
                      environment: MountFixture.environment)
    }

    /// A config file limiting the mount's fetches to 16 MB/s: big files are still being fetched
    /// when the daemon changes.
    static func slowConfig(_ label: String) throws -> String {
        let path = NSTemporaryDirectory() + TestServers.uniqueName(label) + ".toml"
        try "bandwidth_limit = \"16MB\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func inode(_ path: String) -> UInt64? {
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : nil
    }

    static func daemonPid(_ mount: MountFixture) throws -> Int32 {
        try #require((try mount.mountInfo()["pid"] as? NSNumber)?.int32Value)
    }

    @Test func openFilesAndMapsKeepReadingTheRightBytesThroughATakeover() throws {
        let slow = try Self.slowConfig("takeover-slow")
        defer { try? FileManager.default.removeItem(atPath: slow) }
        let (mount, model, _) = try MountTests.nginxModel("tko", sizes: [("w.bin", 48 << 20), ("m.bin", 40 << 20), ("done.bin", 4 << 20)],
                                                          chunkSize: 4 << 20, options: "config=\(slow)")
        let id = model.modelID
        // done.bin complete first: its open is served from the blob where the kernel can (passthrough).
        #expect(try sha256sum(mount.path(id, "done.bin")) == model.files[2].sha256)
        #expect(try TrustMountTests.waitForState(mount.path(id, "done.bin"), "COMPLETE"))
        let paths = [mount.mountpoint + "/" + id, mount.path(id, "w.bin"), mount.path(id, "m.bin"), mount.path(id, "done.bin")]
        let inodes = paths.map(Self.inode)
        let old = try Self.daemonPid(mount)
        let passthrough = try mount.mountInfo()["passthrough"] as? Bool

        let held = try Reader("held", mount.path(id, "done.bin"))
        let stream = try Reader("stream", mount.path(id, "w.bin"))
        let mapped = try Reader("mmap", mount.path(id, "m.bin"))
        let probe = try Reader("probe", mount.path(id, "done.bin"), ["4"])
        Thread.sleep(forTimeInterval: 0.5)   // reads in flight, fetches running

        let started = Date()
        let result = try Self.takeover(mount)
        let took = Date().timeIntervalSince(started)
        #expect(result.status == 0, "\(result.output)")
        try MountFixture.waitForExit(old)
        let new = try Self.daemonPid(mount)
        #expect(new != old, "mount.json names the new daemon")
        #expect(kill(new, 0) == 0, "the new daemon runs")
        #expect(mount.isMounted, "never unmounted")

        held.go()
        let reports = try [stream.report(), mapped.report(), held.report()]
        for (report, file) in zip(reports, [model.files[0], model.files[1], model.files[2]]) {
            #expect(report["error"] is NSNull, "\(file.path): \(report)")
            #expect(report["sha256"] as? String == file.sha256, "\(file.path): \(report)")
        }
        let probed = try probe.report()
        #expect(probed["error"] is NSNull, "\(probed)")
        print("takeover: mount.wanfs -o takeover returned in \(Int(took * 1000)) ms; the slowest open of a complete file during it: \(probed["slowest_ms"] ?? "?") ms over \(probed["opens"] ?? "?") opens")

        #expect(paths.map(Self.inode) == inodes, "inode numbers carry on")
        #expect(try mount.mountInfo()["passthrough"] as? Bool == passthrough, "passthrough carries on")
        // The read metrics the sidecar exports go on from the old daemon's counts: every byte
        // read through a daemon (done.bin's 4 MiB before the takeover, the two big files across
        // it) is in the new daemon's totals.
        let metrics = mount.root + "/.state/mounts/\(new).json"
        let least = Int64((48 + 40 + 4) << 20)
        var total: Int64 = 0
        let published = Date().addingTimeInterval(20)
        while total < least && Date() < published {
            Thread.sleep(forTimeInterval: 0.25)
            if let data = FileManager.default.contents(atPath: metrics),
               let counts = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                total = ((counts["bytesFromCache"] as? NSNumber)?.int64Value ?? 0) + ((counts["bytesFromOrigin"] as? NSNumber)?.int64Value ?? 0)
            }
        }
        #expect(total >= least, "the new daemon's metrics count what the old one served: \(total) of at least \(least)")
        #expect(try sha256sum(mount.path(id, "done.bin")) == model.files[2].sha256, "a new open of a complete file")
        #expect(try TrustMountTests.waitForState(mount.path(id, "w.bin"), "COMPLETE"), "xattrs answer, and the fetch finished")
        #expect(try mount.liveStatus(id)["state"] as? String == "COMPLETE", "status --mount talks to the new daemon")
        try mount.unmount()
        try MountFixture.waitForExit(new)
    }

    @Test func aTakeoverWithABadManifestOrOptionIsRefusedAndTheMountKeepsServing() throws {
        let (mount, model, _) = try MountTests.nginxModel("tkbad", sizes: [("a.bin", 1 << 20)])
        let old = try Self.daemonPid(mount)
        let bad = try mount.dir.write("bad.toml", "[models.\"broken@1.0\"]\nsources = 3\n")
        let badManifest = try Self.takeover(mount, "manifest=\(bad)")
        #expect(badManifest.status == 2, "\(badManifest.output)")
        #expect(badManifest.output.contains("bad.toml"), "names the manifest: \(badManifest.output)")
        let badOption = try Self.takeover(mount, "verify=sometimes")
        #expect(badOption.status == 2, "\(badOption.output)")
        #expect(badOption.output.contains("verify"), "names the option: \(badOption.output)")
        #expect(try Self.daemonPid(mount) == old, "the running daemon keeps the mount")
        #expect(try sha256sum(mount.path(model.modelID, "a.bin")) == model.files[0].sha256)
        try mount.unmount()
    }

    @Test func aTakeoverShowsItsManifestAndOnlyOneOfTwoAtOnceWins() throws {
        let (mount, first, _) = try MountTests.nginxModel("tkman", sizes: [("a.bin", 2 << 20)])
        let second = ModelFixture(modelID: "tkman2@1.0", sizes: [("b.bin", 3 << 20)], seed: 99)
        let prefix = TestServers.uniqueName("tkman2")
        for file in second.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let replaced = try mount.dir.write("next.toml", ModelFixture.manifest([second.manifestEntry(sources: ["\(http)/\(prefix)"])]))
        let held = try Reader("held", mount.path(first.modelID, "a.bin"))
        // No read in flight here: the stall is the handover itself.
        let probe = try Reader("probe", mount.path(".wanfs", "mount.json"), ["3"])
        Thread.sleep(forTimeInterval: 0.3)

        let result = try Self.takeover(mount, "manifest=\(replaced)")
        #expect(result.status == 0, "\(result.output)")
        let probed = try probe.report()
        #expect(probed["error"] is NSNull, "\(probed)")
        print("takeover with nothing in flight: the slowest open during it: \(probed["slowest_ms"] ?? "?") ms over \(probed["opens"] ?? "?") opens")
        let listing = try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint)
        #expect(listing.contains(second.modelID) && !listing.contains(first.modelID), "the new manifest's models: \(listing)")
        held.go()
        let report = try held.report()
        #expect(report["sha256"] as? String == first.files[0].sha256, "a file open under the removed model keeps reading: \(report)")
        #expect(try sha256sum(mount.path(second.modelID, "b.bin")) == second.files[0].sha256)

        // Two at once: one takes the mount, the other is refused; the mount serves either way.
        let before = try Self.daemonPid(mount)
        let outcomes = [0, 1].map { _ -> Process in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: BuiltProducts.path("mount.wanfs"))
            process.arguments = [mount.root, mount.mountpoint, "-o", "takeover"]
            process.environment = MountFixture.environment
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            return process
        }
        for process in outcomes { try process.run() }
        for process in outcomes { process.waitUntilExit() }
        let statuses = outcomes.map(\.terminationStatus)
        // Of the two that asked the running daemon, one took it over; a second that came late
        // may legitimately take over from the winner in turn (a chain, not a double takeover).
        let log = (try? String(contentsOfFile: mount.root + "/.state/mount.log", encoding: .utf8)) ?? ""
        let fromBefore = log.components(separatedBy: "over from pid \(before) (").count - 1
        #expect(fromBefore == 1, "exactly one took the running daemon over: \(statuses), log:\n\(log)")
        #expect(statuses.contains(0), "\(statuses)")
        try MountFixture.waitForExit(before)
        let after = try Self.daemonPid(mount)
        #expect(after != before && kill(after, 0) == 0)
        #expect(try sha256sum(mount.path(second.modelID, "b.bin")) == second.files[0].sha256)
        try mount.unmount()
        try MountFixture.waitForExit(after)
    }

    @Test func aDaemonKilledMidReadIsReplacedAndReadersGetTheRightBytes() throws {
        let slow = try Self.slowConfig("crash-slow")
        defer { try? FileManager.default.removeItem(atPath: slow) }
        let sizes = [("w.bin", 48 << 20), ("m.bin", 40 << 20), ("done.bin", 1 << 20)]
        let (mount, model, prefix) = try MountTests.nginxModel("crash", sizes: sizes, chunkSize: 4 << 20, options: "config=\(slow)")
        let id = model.modelID
        #expect(try sha256sum(mount.path(id, "done.bin")) == model.files[2].sha256)
        let old = try Self.daemonPid(mount)
        let holder = try #require(mount.holderPid, "mount.wanfs starts a holder")
        let inode = Self.inode(mount.path(id, "w.bin"))

        // A complete file held open across the crash: as root on Linux >= 6.9 it passes through
        // to a backing file the dead daemon registered, and the kernel refuses any other kind of
        // open of it while that lasts.
        let held = try Reader("held", mount.path(id, "done.bin"))
        let stream = try Reader("stream", mount.path(id, "w.bin"))
        let mapped = try Reader("mmap", mount.path(id, "m.bin"))
        let probe = try Reader("probe", mount.path(id, "done.bin"), ["4"])
        Thread.sleep(forTimeInterval: 1)   // reads in flight, fetches running, partial files on disk
        kill(old, SIGKILL)
        try MountFixture.waitForExit(old)

        for (report, file) in zip([try stream.report(), try mapped.report()], [model.files[0], model.files[1]]) {
            #expect(report["error"] is NSNull, "\(file.path): \(report)")
            #expect(report["sha256"] as? String == file.sha256, "\(file.path): \(report)")
        }
        held.go()
        let kept = try held.report()
        #expect(kept["sha256"] as? String == model.files[2].sha256, "the fd held across the crash: \(kept)")
        #expect(try sha256sum(mount.path(id, "done.bin")) == model.files[2].sha256, "a new open of the file held across the crash")
        let probed = try probe.report()
        #expect(probed["error"] is NSNull, "\(probed)")
        print("crash recovery: the slowest open of a complete file across kill -9 of the daemon: \(probed["slowest_ms"] ?? "?") ms over \(probed["opens"] ?? "?") opens")
        #expect(mount.isMounted, "never unmounted")
        let new = try Self.daemonPid(mount)
        #expect(new == holder, "the holder became the new daemon")
        let started = Date().addingTimeInterval(10)
        while mount.holderPid == nil && Date() < started { Thread.sleep(forTimeInterval: 0.05) }
        #expect(mount.holderPid.map { $0 != holder && kill($0, 0) == 0 } == true, "and started a holder of its own")
        #expect(Self.inode(mount.path(id, "w.bin")) == inode)
        // The partial files were carried on, not fetched again.
        let served = try TestServers.nginxBytes(containing: prefix)
        let size = Int64(sizes.reduce(0) { $0 + $1.1 })
        #expect(served < size * 13 / 10, "the origin served \(served) bytes for \(size)")
        try mount.unmount()
        try MountFixture.waitForExit(new)
    }

    /// Under systemd the unit's descriptor store keeps the connection instead of a holder, and
    /// Restart= starts the next daemon with it (Tests/clients/fake_systemd.py plays systemd).
    @Test func underSystemdTheDescriptorStoreCarriesTheMountAcrossACrash() throws {
        let slow = try Self.slowConfig("store-slow")
        defer { try? FileManager.default.removeItem(atPath: slow) }
        let prefix = TestServers.uniqueName("store")
        let model = ModelFixture(modelID: "store@1.0", sizes: [("w.bin", 40 << 20)], chunkSize: 4 << 20, seed: 5)
        for file in model.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let mount = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["\(http)/\(prefix)"])]))
        let result = try Shell.run("/usr/bin/env", ["python3", TestServers.repositoryRoot + "/Tests/clients/fake_systemd.py", BuiltProducts.path("mount.wanfs"),
                                                    mount.root, mount.mountpoint, "manifest=\(mount.manifest),config=\(slow)", mount.path(model.modelID, "w.bin")])
        let line = result.output.split(separator: "\n").last.map(String.init) ?? ""
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(result.output)")
        #expect(report["ready"] as? Bool == true && report["stored"] as? Bool == true, "READY=1 and FDSTORE=1 with the connection: \(report)")
        #expect(report["restarted_ready"] as? Bool == true, "the restarted daemon carried the stored connection on: \(report)")
        #expect(report["error"] is NSNull && report["sha256"] as? String == model.files[0].sha256, "the reader across the crash: \(report)")
        #expect(report["removed"] as? Bool == true && report["exit"] as? Int == 0, "a clean unmount empties the store: \(report)")
        #expect(!mount.isMounted)
    }

    /// Recoveries are bounded: five daemons that die in a row are replaced, the sixth ends the
    /// mount (ENOTCONN) instead of a restart loop.
    @Test func aDaemonThatKeepsDyingIsReplacedFiveTimesThenTheMountFails() throws {
        let (mount, model, _) = try MountTests.nginxModel("dying", sizes: [("a.bin", 1 << 20)])
        var daemon = try Self.daemonPid(mount)
        var holder = try #require(mount.holderPid)
        for round in 1...5 {
            kill(daemon, SIGKILL)
            try MountFixture.waitForExit(daemon)
            // Reading through the mount waits for the new daemon: the holder, become it.
            #expect(try Self.daemonPid(mount) == holder, "recovery \(round)")
            daemon = holder
            // It serves before it has started its own holder.
            let started = Date().addingTimeInterval(10)
            while mount.holderPid == nil && Date() < started { Thread.sleep(forTimeInterval: 0.05) }
            holder = try #require(mount.holderPid)
        }
        #expect(try sha256sum(mount.path(model.modelID, "a.bin")) == model.files[0].sha256)
        kill(daemon, SIGKILL)
        try MountFixture.waitForExit(daemon)
        try MountFixture.waitForExit(holder)
        let result = readFile(mount.path(model.modelID, "a.bin"))
        #expect(result == .failure(POSIXErrorBox(errno: ENOTCONN)), "the sixth death in a row ends the mount")
        try Shell.run("/bin/umount", ["-l", mount.mountpoint])
    }
}
