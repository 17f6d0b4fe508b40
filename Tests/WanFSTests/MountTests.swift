import Foundation
import Testing
import WanTestSupport

/// The mount through the kernel: `mount.wanfs` over real origins (nginx, the fault server, a
/// Python HTTP server we stop), read by `ls`, `sha256sum`, `read(2)` and Python's safetensors,
/// with bytes counted at the origin.
@Suite(.serialized) struct MountTests {
    /// A binary model on nginx under a fresh prefix, mounted.
    static func nginxModel(_ label: String, sizes: [(String, Int)], chunkSize: Int? = nil, options: String = "",
                           extraSources: [String] = []) throws -> (MountFixture, ModelFixture, prefix: String) {
        let prefix = TestServers.uniqueName(label)
        let model = ModelFixture(modelID: "\(label)@1.0", sizes: sizes, chunkSize: chunkSize, seed: UInt64(label.count + 7))
        for file in model.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let fixture = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: extraSources + ["\(http)/\(prefix)"])]))
        try fixture.mount(options)
        return (fixture, model, prefix)
    }

    /// A safetensors model made by scripts/make_model.py in nginx's root, with its manifest, mounted.
    static func safetensorsModel(_ label: String, shards: Int, shardMiB: Int, chunkMiB: Int = 4, tensorMiB: Int = 4, layout: String = "uniform", options: String = "")
        throws -> (MountFixture, source: String, prefix: String) {
        let prefix = TestServers.uniqueName(label)
        let source = try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix
        let manifest = NSTemporaryDirectory() + prefix + ".toml"
        defer { try? FileManager.default.removeItem(atPath: manifest) }
        let made = try Shell.run("/usr/bin/env", ["python3", TestServers.repositoryRoot + "/scripts/make_model.py", source, "--shards", "\(shards)",
                                                      "--shard-mib", "\(shardMiB)", "--chunk-mib", "\(chunkMiB)", "--tensor-mib", "\(tensorMiB)", "--layout", layout, "--manifest", manifest,
                                                      "--model-id", "\(label)@1.0", "--source", try TestServers.value("WAN_TEST_HTTP") + "/" + prefix])
        guard made.status == 0 else { throw TestEnvironmentError("make_model.py failed: \(made.output)") }
        let fixture = try MountFixture(manifest: try String(contentsOfFile: manifest, encoding: .utf8))
        try fixture.mount(options)
        return (fixture, source, prefix)
    }

    /// `model` on two sources, mounted: the fault server flipping the byte at `flipAt` first,
    /// nginx second. Returns the mount and the good source's URL.
    static func corruptThenGood(_ model: ModelFixture, flipAt: Int, options: String) throws -> (MountFixture, good: String) {
        let prefix = TestServers.uniqueName("corrupt-then-good")
        for file in model.files {
            try TestServers.putFault("\(prefix)/\(file.path)", file.data)
            try TestServers.putHTTP("\(prefix)/\(file.path)", file.data)
        }
        let bad = try TestServers.value("WAN_TEST_FAULTS") + "/corrupt;offset=\(flipAt)/\(prefix)"
        let good = try TestServers.value("WAN_TEST_HTTP") + "/\(prefix)"
        let mount = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: [bad, good])]))
        try mount.mount(options)
        return (mount, good)
    }

    @Test func theSidecarExportsWhatTheMountServed() throws {
        // The daemon's counters: with passthrough the kernel would serve the warm pass itself, unseen.
        let (mount, model, _) = try Self.nginxModel("rdm", sizes: [("w.bin", 4 << 20)], options: "passthrough=off")
        let file = mount.path("rdm@1.0", "w.bin"), size = Double(4 << 20)
        #expect(try sha256sum(file) == model.file("w.bin").sha256, "cold: fetched while read")
        // Drop the file's pages from the kernel's cache, so the second pass reaches the mount.
        let dropped = try Shell.run("/usr/bin/env", ["python3", "-c",
            "import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)", file])
        #expect(dropped.status == 0, "\(dropped.output)")
        #expect(try sha256sum(file) == model.file("w.bin").sha256, "warm: from the cache")

        let port = try freeLoopbackPort()
        let serve = Process()
        serve.executableURL = URL(fileURLWithPath: BuiltProducts.path("wan"))
        serve.arguments = ["serve", "--listen", "127.0.0.1:\(port)", "--rate-limits", "off"]
        serve.environment = MountFixture.environment.merging(["MODELS_ROOT": mount.root, "WAN_MODELS_MANIFEST": mount.manifest]) { _, new in new }
        serve.standardOutput = FileHandle.nullDevice
        serve.standardError = FileHandle.nullDevice
        try serve.run()
        defer { serve.terminate(); serve.waitUntilExit() }
        // The mount publishes its counters every 5 s.
        func sample(_ line: String, in text: String) -> Double? {
            text.split(separator: "\n").first { $0.hasPrefix(line + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        var metrics = ""
        let deadline = Date().addingTimeInterval(20)
        repeat {
            Thread.sleep(forTimeInterval: 0.5)
            metrics = (try? Shell.run("/usr/bin/curl", ["-sS", "--max-time", "5", "http://127.0.0.1:\(port)/metrics"]).output) ?? ""
        } while Date() < deadline && (sample(#"wan_read_bytes_total{served_from="cache"}"#, in: metrics) ?? 0) < size
        let cache = sample(#"wan_read_bytes_total{served_from="cache"}"#, in: metrics) ?? -1
        let origin = sample(#"wan_read_bytes_total{served_from="origin"}"#, in: metrics) ?? -1
        #expect(origin > 0 && cache >= size, "the first pass waited for the origin, the second did not: \(origin) / \(cache)")
        #expect(origin + cache == 2 * size, "every byte read through the mount is counted once per pass")
        let reads = (sample("wan_cache_hits_total", in: metrics) ?? 0) + (sample("wan_cache_misses_total", in: metrics) ?? 0)
        #expect(reads > 0 && sample("wan_read_latency_seconds_count", in: metrics) == reads, "one latency sample per read")
    }

    @Test func listingCostsNoNetworkAndEveryFileReadsByteExact() throws {
        let (mount, model, prefix) = try Self.nginxModel("lsr", sizes: [
            ("model_index.json", 321), ("transformer/config.json", 77), ("transformer/w-00001.safetensors", 9 << 20 + 123),
            ("vae/v.bin", 3 << 20), ("empty.txt", 0),
        ], chunkSize: 1 << 20)
        let listing = try Shell.run("/bin/ls", ["-lR", mount.mountpoint])
        #expect(listing.status == 0)
        #expect(listing.output.contains("lsr@1.0"))
        #expect(listing.output.contains(String(9 << 20 + 123)))
        let stat = try FileManager.default.attributesOfItem(atPath: mount.path("lsr@1.0", "vae/v.bin"))
        #expect((stat[.size] as? NSNumber)?.intValue == 3 << 20)
        // open() alone fetches nothing either.
        let fd = open(mount.path("lsr@1.0", "vae/v.bin"), O_RDONLY)
        #expect(fd >= 0)
        close(fd)
        #expect(try TestServers.nginxRequests(containing: "/\(prefix)/").isEmpty, "ls -lR and open() must not touch the origin")

        for file in model.files {
            #expect(try sha256sum(mount.path("lsr@1.0", file.path)) == file.sha256, "\(file.path)")
        }
        #expect(try TestServers.nginxBytes(containing: "/\(prefix)/") == Int64(model.totalSize))
        let weights = mount.path("lsr@1.0", "transformer/w-00001.safetensors")
        #expect(try xattr(weights, "user.wan.state") == "COMPLETE")
        #expect(try xattr(weights, "user.wan.bytes_present") == String(9 << 20 + 123))
        #expect(try xattr(weights, "user.wan.sha256") == model.file("transformer/w-00001.safetensors").sha256)
        #expect(try xattr(weights, "user.wan.source")?.hasSuffix("/\(prefix)") == true)
        #expect(try xattr(mount.path("lsr@1.0", ""), "user.wan.state") == "COMPLETE")
        #expect(try mount.liveStatus("lsr@1.0")["state"] as? String == "COMPLETE")

        // Read-only, and unknown names do not exist.
        #expect(open(weights, O_WRONLY) == -1 && errno == EROFS)
        #expect(mkdir(mount.mountpoint + "/lsr@1.0/new", 0o755) == -1 && errno == EROFS)
        #expect(open(mount.path("lsr@1.0", "nope.bin"), O_RDONLY) == -1 && errno == ENOENT)
        #expect(!FileManager.default.fileExists(atPath: mount.mountpoint + "/other@1.0"))

        // MODELS_ROOT pointing at the mount asks the live mount (no manifest needed); a
        // directory that is not a mount is refused by --mount.
        let viaRoot = try mount.wan(["models", "status"], environment: ["MODELS_ROOT": mount.mountpoint])
        #expect(viaRoot.status == 0)
        #expect((viaRoot.json["mount"] as? [String: Any])?["models_root"] as? String == mount.root)
        #expect(try mount.wan(["models", "status", "--mount", mount.dir.path]).status == 2)

        // The cache outlives the mount: after a remount the same reads fetch nothing.
        try mount.unmount()
        #expect(!mount.isMounted)
        try mount.mount()
        for file in model.files { #expect(try sha256sum(mount.path("lsr@1.0", file.path)) == file.sha256) }
        #expect(try TestServers.nginxBytes(containing: "/\(prefix)/") == Int64(model.totalSize))
        try mount.unmount()
    }

    @Test func pythonSafetensorsAndJsonReadThroughTheMountMatchTheOriginalFolder() throws {
        let (mount, source, _) = try Self.safetensorsModel("pyload", shards: 2, shardMiB: 12)
        let script = """
        import json, os, sys
        import numpy as np
        from safetensors import safe_open
        from safetensors.numpy import load_file
        mounted, original = sys.argv[1], sys.argv[2]
        checked, keys = 0, 0
        for dirpath, _, names in os.walk(original):
            for name in names:
                rel = os.path.relpath(os.path.join(dirpath, name), original)
                if name.endswith(".json"):
                    assert json.load(open(os.path.join(mounted, rel))) == json.load(open(os.path.join(original, rel))), rel
                    checked += 1
                elif name.endswith(".safetensors"):
                    a, b = load_file(os.path.join(mounted, rel)), load_file(os.path.join(original, rel))
                    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a), rel
                    with safe_open(os.path.join(mounted, rel), "np") as f:
                        for k in f.keys():
                            assert np.array_equal(f.get_tensor(k), b[k]), k
                            keys += 1
                    checked += 1
        print(json.dumps({"files": checked, "tensors": keys}))
        """
        let result = try Python.run(script, [mount.path("pyload@1.0", ""), source])
        #expect(result.status == 0, "\(result.output)")
        let report = try #require(result.json as? [String: Int], "\(result.output)")
        #expect(report["files"] == 5)
        #expect((report["tensors"] ?? 0) >= 6)
        try mount.unmount()
    }

    @Test func aSafetensorsHeaderOfAOneGiBFileFetchesUnderFivePercentAndOneTensorUnderAQuarter() throws {
        let (mount, _, prefix) = try Self.safetensorsModel("lazy1g", shards: 1, shardMiB: 1024, chunkMiB: 0)
        let shard = "transformer/diffusion_pytorch_model-00001-of-00001.safetensors"
        let size = try #require((try FileManager.default.attributesOfItem(atPath: mount.path("lazy1g@1.0", shard))[.size] as? NSNumber)?.int64Value)
        #expect(size > 1 << 30)
        let header = try Python.run("""
            import json, sys
            from safetensors import safe_open
            with safe_open(sys.argv[1], "np") as f:
                print(json.dumps(sorted(f.keys())))
            """, [mount.path("lazy1g@1.0", shard)])
        #expect(header.status == 0, "\(header.output)")
        let keys = try #require(header.json as? [String])
        #expect(keys.count >= 200)
        Thread.sleep(forTimeInterval: 2)   // whatever is fetched after close counts too
        let afterHeader = try TestServers.nginxBytes(containing: "/\(prefix)/transformer/diffusion_pytorch_model-")
        #expect(afterHeader > 0 && afterHeader < size / 20, "header read fetched \(afterHeader) of \(size) bytes")

        let tensor = try Python.run("""
            import json, sys
            from safetensors import safe_open
            with safe_open(sys.argv[1], "np") as f:
                t = f.get_tensor(sys.argv[2])
                print(json.dumps({"elements": int(t.size), "sum": float(t.sum())}))
            """, [mount.path("lazy1g@1.0", shard), keys[keys.count / 2]])
        #expect(tensor.status == 0, "\(tensor.output)")
        #expect(((tensor.json as? [String: Any])?["elements"] as? Int ?? 0) > 0)
        Thread.sleep(forTimeInterval: 2)
        let afterTensor = try TestServers.nginxBytes(containing: "/\(prefix)/transformer/diffusion_pytorch_model-")
        #expect(afterTensor < size / 4, "one tensor fetched \(afterTensor) of \(size) bytes")
        #expect(try mount.liveStatus("lazy1g@1.0")["state"] as? String == "PARTIAL")
        try mount.unmount()
        try? FileManager.default.removeItem(atPath: try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix)
    }

    /// The model-aware readahead, counted at the origin. make_model.py lays tensors out in
    /// numeric order (blocks.0, blocks.1, ..., blocks.10) while loaders ask in name order
    /// (blocks.0, blocks.1, blocks.10, blocks.100, ...): the two orders differ, as in real models.
    /// Tensors of 16 MiB in chunks of 1 MiB: a read tensor costs at most the chunks it shares
    /// with its neighbours and the kernel's readahead past its end (with tensors as small as
    /// the chunks and not aligned with them, every tensor read needs two chunks, and a half
    /// load has to fetch nearly everything to verify what it reads).
    @Test func aHalfLoadFetchesHalfTheModelAndAFullLoadIsFetchedInTheLoadersOrder() throws {
        let (mount, _, prefix) = try Self.safetensorsModel("tensors", shards: 1, shardMiB: 256, chunkMiB: 1, tensorMiB: 16)
        let shard = "transformer/diffusion_pytorch_model-00001-of-00001.safetensors"
        let path = mount.path("tensors@1.0", shard)
        let size = try #require((try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value)
        // Loads every n-th tensor in name order; prints the bytes read and where each tensor
        // read starts in the file, in the order read.
        let load = """
            import json, struct, sys
            from safetensors import safe_open
            raw = open(sys.argv[1], "rb")
            length = struct.unpack("<Q", raw.read(8))[0]
            header = json.loads(raw.read(length))
            with safe_open(sys.argv[1], "np") as f:
                keys = list(f.keys())[::int(sys.argv[2])]
                print(json.dumps({"bytes": sum(f.get_tensor(k).nbytes for k in keys), "tensors": len(keys),
                                  "starts": [8 + length + header[k]["data_offsets"][0] for k in keys]}))
            """
        let half = try Python.run(load, [path, "2"])
        #expect(half.status == 0, "\(half.output)")
        let halfResult = try #require(half.json as? [String: Any])
        let read = try #require(halfResult["bytes"] as? Int)
        let starts = try #require(halfResult["starts"] as? [Int])
        Thread.sleep(forTimeInterval: 2)   // whatever is fetched after close counts too
        let fetched = try TestServers.nginxBytes(containing: "/\(prefix)/transformer/")
        // The tensors read, the chunks they share with their neighbours and the kernel's
        // readahead past them: about 3 MiB per 16 MiB tensor.
        #expect(fetched >= Int64(read) && fetched <= Int64(read) + Int64(read) * 3 / 10,
                "a half load reading \(read) bytes of \(size) fetched \(fetched)")
        // Every other tensor is a stride: from the fourth tensor on, each was asked for whole,
        // ahead of the reader, not from the page fault at its first byte (which asks for about
        // a MiB: max_read rounded to chunks).
        let halfRanges = Self.ranges(try TestServers.nginxRequests(containing: "/\(prefix)/transformer/"))
        let faulted = starts.dropFirst(3).filter { start in
            (halfRanges.filter { $0.contains(Int64(start)) }.map(\.count).max() ?? 0) < 4 << 20
        }
        #expect(faulted.isEmpty, "\(faulted.count) of \(starts.count - 3) tensors were first fetched by the reader's page fault: \(faulted)")

        // A full load on a fresh cache: every byte once, fetched in the order the loader asks.
        try mount.unmount()
        try FileManager.default.removeItem(atPath: mount.root)
        try FileManager.default.createDirectory(atPath: mount.root, withIntermediateDirectories: true)
        let before = try TestServers.nginxRequests(containing: "/\(prefix)/transformer/").count
        try mount.mount()
        let full = try Python.run(load, [path, "1"])
        #expect(full.status == 0, "\(full.output)")
        Thread.sleep(forTimeInterval: 2)
        let requests = Array(try TestServers.nginxRequests(containing: "/\(prefix)/transformer/").dropFirst(before))
        let total = requests.reduce(Int64(0)) { $0 + $1.bytes }
        #expect(total >= size - (1 << 20) && total <= size + size / 50, "a full load fetched \(total) of \(size) bytes")
        // The tensors in the order their first byte was asked for, against the loader's order.
        let names = try Python.run("""
            import json, sys
            from safetensors import safe_open
            with safe_open(sys.argv[1], "np") as f:
                print(json.dumps([k for k in f.keys() if k.endswith(".attn.weight")]))
            """, [path])
        let keys = try #require(names.json as? [String])
        let numbers = keys.compactMap { Int($0.split(separator: ".").dropFirst().first ?? "") }
        #expect(numbers.count == 16)
        let ranges = Self.ranges(requests)
        // make_model.py's tensors: 16 MiB each here, in numeric order after a header of a few
        // KiB, so the middle of tensor n is at 16n + 8 MiB. The request that fetched the middle
        // counts (the kernel reads around a page fault, so a MiB at either end of a tensor is
        // fetched when its neighbour is read).
        let firstAsked = numbers.map { number in ranges.firstIndex { $0.contains(Int64(number) << 24 + 8 << 20) } ?? ranges.count }
        let inOrder = zip(firstAsked, firstAsked.dropFirst()).filter { $0 <= $1 + 8 }.count   // 8: parallel requests finish out of order
        #expect(Double(inOrder) >= 0.9 * Double(firstAsked.count - 1),
                "\(inOrder) of \(firstAsked.count - 1) tensors were fetched after the one the loader reads before them: \(zip(numbers, firstAsked).map { "\($0):\($1)" })")
        try mount.unmount()
        try? FileManager.default.removeItem(atPath: try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix)
    }

    /// The byte ranges of nginx's logged range requests, in the log's order.
    static func ranges(_ requests: [(uri: String, status: Int, bytes: Int64, range: String)]) -> [ClosedRange<Int64>] {
        requests.compactMap { request in
            guard request.range.hasPrefix("bytes=") else { return nil }
            let bounds = request.range.dropFirst(6).split(separator: "-").compactMap { Int64($0) }
            return bounds.count == 2 && bounds[0] <= bounds[1] ? bounds[0]...bounds[1] : nil
        }
    }

    @Test func eightConcurrentReadersOfOneFileShareOneFetch() throws {
        let (mount, model, prefix) = try Self.nginxModel("eight", sizes: [("big.safetensors", 96 << 20)])
        let path = mount.path("eight@1.0", "big.safetensors")
        let digests = Slots<String>(count: 8)
        DispatchQueue.concurrentPerform(iterations: 8) { i in
            digests.set(i, try? sha256sum(path))
        }
        for digest in digests.values { #expect(digest == model.files[0].sha256) }
        let served = try TestServers.nginxBytes(containing: "/\(prefix)/")
        #expect(served >= Int64(96 << 20) && served <= Int64(Double(96 << 20) * 1.1), "origin served \(served) bytes for 8 readers of 96 MiB")
        try mount.unmount()
    }

    @Test func aCorruptByteAtTheOnlySourceIsEIOAndCorruptNeverData() throws {
        let prefix = TestServers.uniqueName("corrupt")
        let model = ModelFixture(modelID: "bad@1.0", sizes: [("chunked.bin", 6 << 20)], chunkSize: 1 << 20, seed: 5)
        let whole = ModelFixture(modelID: "badwhole@1.0", sizes: [("whole.bin", 5 << 20)], seed: 6)
        for file in model.files + whole.files { try TestServers.putFault("\(prefix)/\(file.path)", file.data) }
        let faults = try TestServers.value("WAN_TEST_FAULTS")
        let mount = try MountFixture(manifest: ModelFixture.manifest([
            model.manifestEntry(sources: ["\(faults)/corrupt;offset=3000000/\(prefix)"]),
            whole.manifestEntry(sources: ["\(faults)/corrupt;offset=4000000/\(prefix)"]),
        ]))
        // With chunk digests no byte is served before its chunk verifies (verify=lazy);
        // without, verify=strict holds reads until the whole file verifies.
        try mount.mount("verify=strict,timeout=5,retries=1")
        for (id, file) in [("bad@1.0", "chunked.bin"), ("badwhole@1.0", "whole.bin")] {
            let read = readFile(mount.path(id, file))
            #expect(read == .failure(POSIXErrorBox(errno: EIO)), "\(file): \(read)")
            #expect(try xattr(mount.path(id, file), "user.wan.state") == "CORRUPT", "\(file)")
            let files = try #require(try mount.liveStatus(id)["files"] as? [[String: Any]])
            #expect(files.first?["state"] as? String == "CORRUPT")
        }
        // Nothing corrupt reached the blob store or the model folder.
        #expect(!FileManager.default.fileExists(atPath: mount.root + "/wan22/bad@1.0/chunked.bin"))
        try mount.unmount()
    }

    @Test func withASecondGoodSourceTheReadSucceeds() throws {
        let model = ModelFixture(modelID: "fo@1.0", sizes: [("a.bin", 6 << 20), ("b.bin", 3 << 20)], seed: 9)
        let (mount, good) = try Self.corruptThenGood(model, flipAt: 1000, options: "verify=strict")
        for file in model.files {
            #expect(try readFile(mount.path("fo@1.0", file.path)).get() == file.data, "\(file.path)")
            #expect(try xattr(mount.path("fo@1.0", file.path), "user.wan.source") == good)
        }
        #expect(try mount.liveStatus("fo@1.0")["state"] as? String == "COMPLETE")
        try mount.unmount()
    }

    @Test func unverifiedBytesFoundBadLeaveTheKernelCacheAndTheirHandlesGetEIO() throws {
        // verify=lazy without chunk digests: bytes are served as they land, the whole file is
        // checked at the end. The first source flips a byte; the second is good.
        let model = ModelFixture(modelID: "lazy@1.0", sizes: [("w.bin", 3 << 20)], seed: 17)
        let file = model.files[0]
        let (mount, good) = try Self.corruptThenGood(model, flipAt: 2_000_000, options: "verify=lazy")
        let path = mount.path("lazy@1.0", "w.bin")
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0)
        var buffer = [UInt8](repeating: 0, count: file.size)
        var got = 0
        while got < file.size {
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, file.size - got, off_t(got)) }
            guard n > 0 else { break }
            got += n
        }
        #expect(got == file.size, "the unverified bytes were served")
        #expect(Data(buffer) != file.data, "the first source's flipped byte came through (verify=lazy, no chunk digests)")
        // The whole-file check fails: the bytes are discarded (bytes_present drops to 0).
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, try xattr(path, "user.wan.bytes_present") == String(file.size) { Thread.sleep(forTimeInterval: 0.1) }
        Thread.sleep(forTimeInterval: 0.5)   // the kernel cache is dropped asynchronously
        // The handle that was served bad bytes now fails (its read reaches wanfs again: the
        // kernel's cached pages are gone); a new open reads the good bytes from the second source.
        var byte: UInt8 = 0
        #expect(pread(fd, &byte, 1, 0) == -1 && errno == EIO)
        close(fd)
        #expect(try readFile(path).get() == file.data)
        #expect(try xattr(path, "user.wan.source") == good, "re-fetched from the good source")
        try mount.unmount()
    }

    @Test func aStoppedOrFrozenOriginIsEIOWithinTheTimeoutAndCachedFilesKeepReading() throws {
        let served = try Scratch("wan-origin")
        let model = ModelFixture(modelID: "stop@1.0", sizes: [("cached.bin", 2 << 20), ("later.bin", 2 << 20)], seed: 11)
        try model.write(to: served.path)
        let frozen = ModelFixture(modelID: "frozen@1.0", sizes: [("f.bin", 1 << 20)], seed: 12)
        let prefix = TestServers.uniqueName("frozen")
        for file in frozen.files { try TestServers.putFault("\(prefix)/\(file.path)", file.data) }
        let origin = try StoppableOrigin(directory: served.path)
        let mount = try MountFixture(manifest: ModelFixture.manifest([
            model.manifestEntry(sources: [origin.url]),
            frozen.manifestEntry(sources: [try TestServers.value("WAN_TEST_FAULTS") + "/hang/\(prefix)"]),
        ]))
        try mount.mount("timeout=2,retries=1")
        #expect(try readFile(mount.path("stop@1.0", "cached.bin")).get() == model.file("cached.bin").data)
        origin.stop()

        var started = Date()
        #expect(readFile(mount.path("stop@1.0", "later.bin")) == .failure(POSIXErrorBox(errno: EIO)))
        #expect(Date().timeIntervalSince(started) < 30, "a stopped origin must fail fast")
        started = Date()
        #expect(readFile(mount.path("frozen@1.0", "f.bin")) == .failure(POSIXErrorBox(errno: EIO)))
        let waited = Date().timeIntervalSince(started)
        #expect(waited >= 1.5 && waited < 30, "a frozen origin fails after the timeout (2 s x 2 tries), took \(waited) s")

        #expect(try readFile(mount.path("stop@1.0", "cached.bin")).get() == model.file("cached.bin").data)
        #expect(try Shell.run("/bin/ls", [mount.mountpoint + "/stop@1.0"]).status == 0, "the mount stays up")
        try mount.unmount()
    }

    @Test func hydrateOpenFetchesTheWholeFileAfterOneSmallRead() throws {
        let (mount, model, prefix) = try Self.nginxModel("hydrate", sizes: [("w.bin", 40 << 20), ("other.bin", 8 << 20)], options: "hydrate=open")
        let path = mount.path("hydrate@1.0", "w.bin")
        let fd = open(path, O_RDONLY)
        #expect(fd >= 0)
        var byte: UInt8 = 0
        #expect(pread(fd, &byte, 1, 0) == 1)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, try xattr(path, "user.wan.state") != "COMPLETE" { Thread.sleep(forTimeInterval: 0.1) }
        close(fd)
        #expect(try xattr(path, "user.wan.state") == "COMPLETE", "hydrate=open fetches the file in the background")
        #expect(try xattr(mount.path("hydrate@1.0", "other.bin"), "user.wan.state") == "NOT_PRESENT", "files not opened stay untouched")
        #expect(try TestServers.nginxBytes(containing: "/\(prefix)/w.bin") == Int64(model.file("w.bin").size))
        try mount.unmount()
    }

    @Test func cacheMaxKeepsModelsRootUnderItsSizeAtMount() throws {
        let (mount, model, _) = try Self.nginxModel("gcmax", sizes: [("w.bin", 2 << 20)])
        #expect(try readFile(mount.path("gcmax@1.0", "w.bin")).get() == model.files[0].data)
        let committed = Date().addingTimeInterval(20)   // verified and linked in the background
        while Date() < committed, try xattr(mount.path("gcmax@1.0", "w.bin"), "user.wan.state") != "COMPLETE" { Thread.sleep(forTimeInterval: 0.1) }
        try mount.unmount()
        #expect(FileManager.default.fileExists(atPath: mount.root + "/wan22/gcmax@1.0/w.bin"))
        try mount.mount("cache_max=1KB")   // the first collection runs when the mount starts
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, FileManager.default.fileExists(atPath: mount.root + "/wan22/gcmax@1.0") { Thread.sleep(forTimeInterval: 0.1) }
        #expect(!FileManager.default.fileExists(atPath: mount.root + "/wan22/gcmax@1.0"), "the least recently used model is removed")
        #expect(try xattr(mount.path("gcmax@1.0", "w.bin"), "user.wan.state") == "NOT_PRESENT")
        try mount.unmount()
    }

    /// `wan models wait --mount`: an init container waits on the live mount, and returns once a
    /// reader of the mount has made the model complete.
    @Test func waitOnTheMountReturnsOnceAReaderCompletedTheModel() throws {
        let (mount, model, _) = try Self.nginxModel("ready", sizes: [("w.bin", 2 << 20)])
        let early = try mount.wan(["models", "wait", "ready@1.0", "--mount", mount.mountpoint, "--timeout", "0.3"])
        #expect(early.status == 1 && early.json["outcome"] as? String == "timeout", "nothing read yet: \(early.json)")
        #expect(try mount.wan(["models", "wait", "nope@1.0", "--mount", mount.mountpoint, "--timeout", "1"]).status == 2)
        #expect(try readFile(mount.path("ready@1.0", "w.bin")).get() == model.files[0].data)
        let done = try mount.wan(["models", "wait", "ready@1.0", "--mount", mount.mountpoint, "--timeout", "30", "--interval", "0.1"])
        #expect(done.status == 0 && done.json["outcome"] as? String == "reached", "\(done.json)")
        try mount.unmount()
    }

    /// `wan models reload` (SIGHUP): a model added appears, a model removed leaves the
    /// listings while a file open under it keeps reading, a file whose content changed is a new
    /// inode for new opens (an old descriptor keeps the old bytes), unchanged paths keep their
    /// inodes; a manifest that does not load is refused and the mount keeps the one it had.
    @Test func aReloadedManifestChangesTheTreeWithoutBreakingOpenFiles() throws {
        let prefix = TestServers.uniqueName("reload")
        let http = try TestServers.value("WAN_TEST_HTTP")
        let a = ModelFixture(modelID: "ra@1.0", sizes: [("w.bin", 3 << 20)], seed: 201)
        let b = ModelFixture(modelID: "rb@1.0", sizes: [("y.bin", 1 << 20)], seed: 202)
        let c1 = ModelFixture(modelID: "rc@1.0", sizes: [("x.bin", 1 << 20)], seed: 203)
        let c2 = ModelFixture(modelID: "rc@1.0", sizes: [("x.bin", 1 << 20)], seed: 204)   // same path, other content
        for (folder, model) in [("a", a), ("b", b), ("c1", c1), ("c2", c2)] {
            for file in model.files { try TestServers.putHTTP("\(prefix)/\(folder)/\(file.path)", file.data) }
        }
        let mount = try MountFixture(manifest: ModelFixture.manifest([a.manifestEntry(sources: ["\(http)/\(prefix)/a"]),
                                                                      c1.manifestEntry(sources: ["\(http)/\(prefix)/c1"])]))
        try mount.mount()
        let aFile = mount.path("ra@1.0", "w.bin"), cFile = mount.path("rc@1.0", "x.bin")
        let openA = try #require(FileHandle(forReadingAtPath: aFile))
        let openC = try #require(FileHandle(forReadingAtPath: cFile))
        #expect(try openA.read(upToCount: 1 << 20) == a.files[0].data.prefix(1 << 20))
        let inodes = (c: try inode(cFile), cDirectory: try inode(mount.mountpoint + "/rc@1.0"))
        func listed() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: mount.mountpoint).filter { !$0.hasPrefix(".") }.sorted() }
        #expect(try listed() == ["ra@1.0", "rc@1.0"])   // the kernel caches this listing

        // A reload that only adds: the cached listing must show it at once.
        try ModelFixture.manifest([a.manifestEntry(sources: ["\(http)/\(prefix)/a"]), b.manifestEntry(sources: ["\(http)/\(prefix)/b"]),
                                   c1.manifestEntry(sources: ["\(http)/\(prefix)/c1"])])
            .write(toFile: mount.manifest, atomically: true, encoding: .utf8)
        #expect(try mount.wan(["models", "reload", "--mount", mount.mountpoint]).status == 0)
        #expect(try listed() == ["ra@1.0", "rb@1.0", "rc@1.0"], "an added model shows in a listing the kernel had cached")

        try ModelFixture.manifest([b.manifestEntry(sources: ["\(http)/\(prefix)/b"]), c2.manifestEntry(sources: ["\(http)/\(prefix)/c2"])])
            .write(toFile: mount.manifest, atomically: true, encoding: .utf8)
        let reload = try mount.wan(["models", "reload", "--mount", mount.mountpoint])
        #expect(reload.status == 0 && reload.json["ok"] as? Bool == true && reload.json["models"] as? Int == 2, "\(reload.json)")

        #expect(try listed() == ["rb@1.0", "rc@1.0"])
        #expect(!FileManager.default.fileExists(atPath: aFile), "a removed model's files are gone for new lookups")
        #expect(try openA.readToEnd() == a.files[0].data.dropFirst(1 << 20), "a file open before the reload reads on")
        #expect(try readFile(mount.path("rb@1.0", "y.bin")).get() == b.files[0].data, "an added model is served")
        #expect(try readFile(cFile).get() == c2.files[0].data, "a changed file is the new content for new opens")
        #expect(try inode(cFile) != inodes.c)
        #expect(try inode(mount.mountpoint + "/rc@1.0") == inodes.cDirectory, "unchanged paths keep their inodes")
        #expect(try openC.readToEnd() == c1.files[0].data, "a descriptor opened before keeps the content it opened")

        try "schema_version = 1\n[models.\"broken\n".write(toFile: mount.manifest, atomically: true, encoding: .utf8)
        let refused = try mount.wan(["models", "reload", "--mount", mount.mountpoint])
        #expect(refused.status == 1 && refused.json["ok"] as? Bool == false && (refused.json["error"] as? String ?? "").contains("MANIFEST"),
                "\(refused.json)")
        let reloads = try #require((try mount.mountInfo())["reloads"] as? [String: Any])
        #expect(reloads["applied"] as? Int == 2 && reloads["refused"] as? Int == 1 && reloads["last_error"] is String)
        let status = try mount.wan(["models", "status", "--mount", mount.mountpoint])
        #expect(((status.json["mount"] as? [String: Any])?["reloads"] as? [String: Any])?["last_error"] is String, "status --mount says why")
        #expect(try readFile(mount.path("rb@1.0", "y.bin")).get() == b.files[0].data, "the mount keeps the manifest it had")
        try openA.close()
        try openC.close()
        try mount.unmount()
    }

    /// The Hugging Face cache view: with `HF_HUB_CACHE=MOUNT/hub HF_HUB_OFFLINE=1`, transformers'
    /// `AutoConfig.from_pretrained(REPO)`, `hf_hub_download` and `snapshot_download` find the
    /// model of an `hf://` source through the mount, as the same inodes, lazily: a config-only
    /// call fetches only the config from the Hub.
    @Test func theHubViewServesHuggingFaceLibrariesLazily() throws {
        let repo = "wan-test/" + TestServers.uniqueName("hubview")
        let dir = try Scratch("wan-hubview")
        let made = try Python.run("""
            import json, sys, numpy as np
            from safetensors.numpy import save_file
            save_file({"w": np.arange(262144, dtype=np.float32).reshape(512, 512), "b": np.ones(4096, dtype=np.float32)}, sys.argv[1])
            print(json.dumps({"ok": True}))
            """, [dir.path + "/model.safetensors"])
        #expect(made.status == 0, "\(made.output)")
        let config = Data(#"{"model_type": "bert", "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "intermediate_size": 128, "vocab_size": 100}"#.utf8)
        let weights = try Data(contentsOf: URL(fileURLWithPath: dir.path + "/model.safetensors"))
        try config.write(to: URL(fileURLWithPath: dir.path + "/config.json"))
        try TestServers.putHF(repo: repo, files: ["config.json": config, "model.safetensors": weights])
        let entries = try [("config.json", config), ("model.safetensors", weights)].map { path, data in
            "[[models.\"hubview@1.0\".files]]\npath = \"\(path)\"\nsize = \(data.count)\nsha256 = \"\(try #require(try sha256sum(dir.path + "/" + path)))\"\n"
        }
        let manifest = "schema_version = 1\n\n[models.\"hubview@1.0\"]\n\n" + entries.joined(separator: "\n")
            + "\n[models.\"hubview@1.0\".sources]\npriority = [\"hf://\(repo)\"]\n"
        let mount = try MountFixture(manifest: manifest)
        let configFile = try mount.dir.write("config.toml", "hf_endpoint = \"\(try TestServers.value("WAN_TEST_HF_HUB"))\"\n")
        try mount.mount("config=\(configFile)")

        let name = "models--" + repo.replacingOccurrences(of: "/", with: "--")
        let commit = try String(contentsOfFile: "\(mount.mountpoint)/hub/\(name)/refs/main", encoding: .utf8)
        #expect(commit.count == 40 && commit.allSatisfy(\.isHexDigit), "\(commit)")
        let snapshot = "\(mount.mountpoint)/hub/\(name)/snapshots/\(commit)"
        #expect(try inode(snapshot + "/model.safetensors") == inode(mount.path("hubview@1.0", "model.safetensors")), "the same inode")

        let environment = "import os, sys, json\nos.environ['HF_HUB_CACHE'] = sys.argv[1] + '/hub'\nos.environ['HF_HUB_OFFLINE'] = '1'\n"
        let configOnly = try Python.run(environment + """
            from transformers import AutoConfig
            config = AutoConfig.from_pretrained(sys.argv[2])
            print(json.dumps({"model_type": config.model_type, "hidden_size": config.hidden_size}))
            """, [mount.mountpoint, repo])
        #expect(configOnly.status == 0, "\(configOnly.output)")
        #expect((configOnly.json as? [String: Any])?["hidden_size"] as? Int == 64, "\(configOnly.output)")
        #expect(try Self.hubBytes(repo, "model.safetensors") == 0, "a config-only call fetches only the config")
        #expect(try Self.hubBytes(repo, "config.json") == Int64(config.count))

        let load = try Python.run(environment + """
            from huggingface_hub import hf_hub_download, snapshot_download
            from safetensors import safe_open
            path = hf_hub_download(sys.argv[2], "model.safetensors")
            folder = snapshot_download(sys.argv[2])
            with safe_open(path, "np") as f:
                total = float(f.get_tensor("w").sum())
            print(json.dumps({"path": path, "folder": folder, "sum": total}))
            """, [mount.mountpoint, repo])
        #expect(load.status == 0, "\(load.output)")
        let answer = load.json as? [String: Any]
        #expect(answer?["folder"] as? String == snapshot && answer?["path"] as? String == snapshot + "/model.safetensors", "\(load.output)")
        #expect(answer?["sum"] as? Double == Double(262143) * 262144 / 2)
        #expect(try Self.hubBytes(repo, "model.safetensors") <= Int64(weights.count), "every byte fetched once at most")
        try mount.unmount()
    }

    /// Body bytes the Hub fixture (hub and CDN) sent for paths of `repo` ending in `file`.
    static func hubBytes(_ repo: String, _ file: String) throws -> Int64 {
        let log = try String(contentsOfFile: try TestServers.value("WAN_TEST_HF_LOG"), encoding: .utf8)
        return log.split(separator: "\n").reduce(Int64(0)) { total, line in
            guard let entry = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let path = entry["path"] as? String, path.contains(repo), path.hasSuffix("/" + file),
                  entry["method"] as? String == "GET" else { return total }
            return total + ((entry["bytes"] as? NSNumber)?.int64Value ?? 0)
        }
    }

    @Test func killNineOfTheDaemonAndARemountKeepPartialProgress() throws {
        let prefix = TestServers.uniqueName("kill9")
        let model = ModelFixture(modelID: "k9@1.0", sizes: [("big.bin", 48 << 20)], chunkSize: 1 << 20, seed: 13)
        for file in model.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        let mount = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: [try TestServers.value("WAN_TEST_HTTP") + "/\(prefix)"])]))
        let slow = try mount.dir.write("slow.toml", "bandwidth_limit = \"12MB\"\n")
        try mount.mount("config=\(slow)")
        let path = mount.path("k9@1.0", "big.bin")
        let reader = Process()
        reader.executableURL = URL(fileURLWithPath: "/bin/cat")
        reader.arguments = [path]
        reader.standardOutput = FileHandle.nullDevice
        reader.standardError = FileHandle.nullDevice
        try reader.run()
        let deadline = Date().addingTimeInterval(30)
        var present: Int64 = 0
        while Date() < deadline, present < 8 << 20 {
            Thread.sleep(forTimeInterval: 0.2)
            present = Int64(try xattr(path, "user.wan.bytes_present") ?? "0") ?? 0
        }
        #expect(present >= 8 << 20 && present < 48 << 20, "present before the kill: \(present)")
        try mount.killDaemon()
        reader.waitUntilExit()

        try mount.mount()
        let file = try #require((try mount.liveStatus("k9@1.0")["files"] as? [[String: Any]])?.first)
        #expect(file["state"] as? String == "PARTIAL")
        let kept = (file["bytes_present"] as? NSNumber)?.int64Value ?? 0
        #expect(kept >= 4 << 20, "bytes kept across kill -9: \(kept)")
        #expect(try sha256sum(path) == model.files[0].sha256)
        let fetched = try TestServers.nginxBytes(containing: "/\(prefix)/")
        #expect(fetched < Int64(48 << 20) + (48 << 20) / 2, "resumed: the origin served \(fetched) bytes for 48 MiB")
        try mount.unmount()
    }

    @Test func mountDashTWanWorksThroughTheInstalledHelper() throws {
        let install = try Shell.run("/bin/bash", [TestServers.repositoryRoot + "/mount-helpers/install.sh", "--bin-dir",
                                                  (BuiltProducts.path("mount.wanfs") as NSString).deletingLastPathComponent, "--link"])
        #expect(install.status == 0, "\(install.output)")
        let served = try Scratch("wan-helper-src")
        let model = ModelFixture(modelID: "helper@1.0", sizes: [("a.bin", 100_000)], seed: 14)
        try model.write(to: served.path)
        let mount = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://\(served.path)"])]))
        let result = try Shell.run("/bin/mount", ["-t", "wanfs", mount.root, mount.mountpoint, "-o", "manifest=\(mount.manifest),noatime"])
        #expect(result.status == 0, "\(result.output)")
        #expect(mount.isMounted)
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        #expect(mounts.contains("\(mount.mountpoint) fuse.wanfs"))
        #expect(try readFile(mount.path("helper@1.0", "a.bin")).get() == model.files[0].data)
        let pid = try #require((try mount.mountInfo()["pid"] as? NSNumber)?.int32Value)
        #expect(try Shell.run("/bin/umount", [mount.mountpoint]).status == 0)
        try MountFixture.waitForExit(pid)
        #expect(!mount.isMounted)
    }

    @Test func wanMountServesInTheForegroundUntilSIGTERMAndKeepsNothingMounted() throws {
        let served = try Scratch("wan-fg-src")
        let model = ModelFixture(modelID: "fg@1.0", sizes: [("a.bin", 300_000)], seed: 16)
        try model.write(to: served.path)
        let mount = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://\(served.path)"])]))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BuiltProducts.path("wan"))
        process.arguments = ["mount", mount.mountpoint, "--models-root", mount.root, "--manifest", mount.manifest]
        process.environment = MountFixture.environment
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !mount.isMounted && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(mount.isMounted)
        #expect(try readFile(mount.path("fg@1.0", "a.bin")).get() == model.files[0].data)
        process.terminate()   // SIGTERM, as systemd or a shell's kill sends it
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(!mount.isMounted)
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(log.contains("is ready") && log.contains("unmounted"), "\(log)")
    }

    @Test func badOptionsAndBadManifestsGiveClearErrorsAndNoMount() throws {
        let model = ModelFixture(modelID: "opts@1.0", sizes: [("a.bin", 10)], seed: 15)
        let mount = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local:///nowhere"])]))
        let cases: [(String, String)] = [
            ("verify=sometimes", "verify"), ("timeout=0", "timeout"), ("prefetch=lots", "prefetch"), ("colour=blue", "colour"),
        ]
        for (option, named) in cases {
            let result = try mount.mount(option, expectSuccess: false)
            #expect(result.status == 2, "\(option): \(result.output)")
            #expect(result.output.contains(named), "\(option): \(result.output)")
            #expect(!mount.isMounted)
        }
        let bad = try mount.dir.write("bad.toml", "schema_version = 1\n[models.\"x@1\"]\n[[models.\"x@1\".files]]\npath = \"../escape\"\nsize = 1\nsha256 = \"zz\"\n")
        let result = try Shell.run(BuiltProducts.path("mount.wanfs"), [mount.root, mount.mountpoint, "-o", "manifest=\(bad)"], environment: MountFixture.environment)
        #expect(result.status == 2)
        #expect(result.output.contains("MANIFEST_INVALID") && result.output.contains("../escape"), "\(result.output)")
        let missing = try Shell.run(BuiltProducts.path("mount.wanfs"), [mount.root, mount.dir.path + "/absent", "-o", "manifest=\(mount.manifest)"],
                                    environment: MountFixture.environment)
        #expect(missing.status == 2 && missing.output.contains("does not exist"), "\(missing.output)")
        #expect(!mount.isMounted)
        let cli = try Shell.run(BuiltProducts.path("wan"), ["mount", mount.mountpoint, "--models-root", mount.root, "--manifest", mount.manifest, "-o", "verify=maybe"],
                                environment: MountFixture.environment)
        #expect(cli.status == 2 && cli.output.contains("verify"), "\(cli.output)")
    }
}

/// A `user.*` extended attribute through the mount, as `getfattr` reads it (nil when absent).
/// The inode number of `path` (stat).
func inode(_ path: String) throws -> UInt64? {
    (try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? NSNumber)?.uint64Value
}

func xattr(_ path: String, _ name: String) throws -> String? {
    let result = try Shell.run("/usr/bin/python3", ["-c", "import os, sys; sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2]).decode())", path, name])
    return result.status == 0 ? result.output : nil
}

/// A private instance of testenv/fault_server.py (Range-capable) on a free port of 127.0.0.1,
/// serving `directory` correctly under `url`: an origin a test can stop.
final class StoppableOrigin: @unchecked Sendable {
    let url: String
    private let process = Process()

    init(directory: String) throws {
        let port = try freeLoopbackPort()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [TestServers.repositoryRoot + "/testenv/fault_server.py", "--root", directory, "--port", String(port)]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        url = "http://127.0.0.1:\(port)/ok"
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if try Shell.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "--max-time", "1", url + "/"]).status == 0 { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw TestEnvironmentError("fault_server.py did not start on \(url)")
    }

    /// Kills the server (SIGKILL: an origin that dies, connections and all).
    func stop() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGSTOP: a frozen origin (connections accepted by the kernel, never answered).
    func freeze() { kill(process.processIdentifier, SIGSTOP) }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGCONT)
            stop()
        }
    }
}
