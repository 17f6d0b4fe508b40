import Foundation
import Testing
import WanTestSupport

/// The CLI's side of trust: GC that cannot read pins removes nothing and says why; numbers in
/// manifests, options and files another process wrote are checked, never trapped on; a
/// symlink under MODELS_ROOT is never written through.
@Suite struct TrustCommandTests {
    /// Two models ensured from local sources, one pinned.
    static func twoModels() throws -> (CacheCommandTests.Setup, ModelFixture) {
        let dir = try Scratch("wan-trust-gc")
        let a = ModelFixture(modelID: "keep@1.0", sizes: [("w.bin", 64 << 10)], seed: 101)
        let b = ModelFixture(modelID: "other@1.0", sizes: [("w.bin", 32 << 10)], seed: 102)
        try a.write(to: dir.path + "/a")
        try b.write(to: dir.path + "/b")
        let manifest = try dir.write("models.toml", ModelFixture.manifest([a.manifestEntry(sources: ["local://a"]),
                                                                           b.manifestEntry(sources: ["local://b"])]))
        let setup = CacheCommandTests.Setup(dir: dir, model: a, env: ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": manifest],
                                            root: dir.path + "/root")
        #expect(try setup.run("models", "ensure", "--all").status == 0)
        #expect(try setup.run("models", "pin", "keep@1.0").status == 0)
        return (setup, b)
    }

    /// With the state database locked by another process past its busy timeout, GC removes
    /// nothing (the pins are unknown), says why, and exits 1.
    @Test func gcRemovesNothingWhenItCannotReadThePins() throws {
        let (setup, _) = try Self.twoModels()
        let locker = Process()
        locker.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        locker.arguments = ["python3", "-c", """
            import sqlite3, sys, time
            db = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)
            db.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            time.sleep(60)
            """, setup.root + "/.state/state.sqlite"]
        let out = Pipe()
        locker.standardOutput = out
        try locker.run()
        defer { locker.terminate() }
        #expect(LineReader(out.fileHandleForReading).next(timeout: 20) == "locked")
        let gc = try setup.run("models", "gc", "--max-size", "1KB")
        #expect(gc.status == 1, "stderr: \(gc.stderr)")
        #expect(gc.stderr.contains("removed nothing") && gc.stderr.contains("state database"), "\(gc.stderr)")
        for model in ["keep@1.0", "other@1.0"] {
            #expect(FileManager.default.fileExists(atPath: setup.root + "/wan22/\(model)/w.bin"), "\(model) was removed")
        }
    }

    /// A state database that is not one (a disk error, a stray write) is the same: nothing removed.
    @Test func gcRemovesNothingFromACorruptStateDatabase() throws {
        let (setup, _) = try Self.twoModels()
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: setup.root + "/.state/state.sqlite" + suffix) }
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: setup.root + "/.state/state.sqlite"))
        let gc = try setup.run("models", "gc", "--max-size", "1KB", "--json")
        #expect(gc.status == 1)
        for model in ["keep@1.0", "other@1.0"] {
            #expect(FileManager.default.fileExists(atPath: setup.root + "/wan22/\(model)/w.bin"), "\(model) was removed")
        }
    }

    /// Numbers no file can have: a clear error naming them, exit 2, never a trap.
    @Test func absurdNumbersInAManifestAreRefusedWithExit2() throws {
        let dir = try Scratch("wan-trust-numbers")
        let sha = String(repeating: "a", count: 64)
        func entry(_ size: String, _ extra: String = "", path: String = "w.bin", sha256: String = sha) -> String {
            "[[models.\"m@1.0\".files]]\npath = \"\(path)\"\nsize = \(size)\nsha256 = \"\(sha256)\"\n\(extra)\n"
        }
        let cases: [(String, String, String)] = [
            ("size Int64.max", entry("9223372036854775807"), "size must be between"),
            ("chunk_size Int64.max", entry("100", "chunk_size = 9223372036854775807\nchunks = [\"\(sha)\"]"), "chunk_size must be between"),
            ("sizes summing past the limit", entry("900000000000000") + entry("900000000000000", path: "b.bin", sha256: String(repeating: "b", count: 64)),
             "add up to more than"),
            ("chunks on an empty file", entry("0", "chunk_size = 1\nchunks = []"), "an empty file has no chunks"),
        ]
        let mountpoint = dir.path + "/mnt"
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        for (label, files, message) in cases {
            let manifest = try dir.write("\(label.replacingOccurrences(of: " ", with: "-")).toml",
                                         "schema_version = 1\n[models.\"m@1.0\"]\n\(files)[models.\"m@1.0\".sources]\npriority = [\"local://src\"]\n")
            let validate = try WanProcess.run(["models", "validate-manifest", "--manifest", manifest])
            #expect(validate.status == 2, "\(label): \(validate.stderr)")
            #expect(validate.stderr.contains(message), "\(label): \(validate.stderr)")
            let mount = try Shell.run(BuiltProducts.path("mount.wanfs"), [dir.path + "/root", mountpoint, "-o", "manifest=\(manifest)"])
            #expect(mount.status == 2, "\(label): mount.wanfs exited \(mount.status): \(mount.output)")
        }
        let good = try dir.write("good.toml", "schema_version = 1\n[models.\"m@1.0\"]\n\(entry("1"))[models.\"m@1.0\".sources]\npriority = [\"local://src\"]\n")
        for option in ["max_read=8GiB", "max_read=1", "prefetch=99999PiB", "read_timeout=1e400", "min_rate=0"] {
            let mount = try Shell.run(BuiltProducts.path("mount.wanfs"), [dir.path + "/root", mountpoint, "-o", "manifest=\(good),\(option)"])
            #expect(mount.status == 2, "\(option): mount.wanfs exited \(mount.status): \(mount.output)")
            #expect(mount.output.contains(String(option.prefix { $0 != "=" })), "\(option): \(mount.output)")
        }
    }

    /// Files other processes write under `.state/mounts/` (a mount's read metrics) are
    /// hostile input too: absurd counts in them never take the sidecar down.
    @Test func tamperedMountMetricsNeverTakeTheSidecarDown() throws {
        let server = try SidecarServer()
        let directory = server.dir.path + "/root/.state/mounts"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let alive = ProcessInfo.processInfo.processIdentifier
        let buckets = Array(repeating: "9223372036854775807", count: 17).joined(separator: ",")
        for (index, pid) in [alive, alive, -1, 0].enumerated() {
            try Data("""
                {"pid": \(pid), "mountpoint": "/x\(index)", "updated": "2026-12-06T00:00:00Z", "bytesFromCache": 9223372036854775807,
                 "bytesFromOrigin": 9223372036854775807, "cacheHits": 9223372036854775807, "cacheMisses": -5,
                 "latencyCounts": [\(buckets)], "latencySum": 1e308, "inFlightFetches": 9223372036854775807}
                """.utf8).write(to: URL(fileURLWithPath: directory + "/\(index + 1000).json"))
        }
        let metrics = try server.get("/metrics")
        #expect(metrics.status == 200, "\(metrics.body)")
        #expect(try server.get("/health/models").status != 0, "the sidecar still answers")
    }
}
