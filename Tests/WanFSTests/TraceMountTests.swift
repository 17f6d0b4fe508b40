import Foundation
import Testing
import WanCache
import WanTestSupport

/// Access traces on real mounts over nginx: a cold load is recorded, exported, imported on
/// "another host" (a fresh MODELS_ROOT), and replayed there when the load starts; counted at
/// the origin (what was fetched, in which order).
@Suite(.serialized) struct TraceMountTests {
    /// Every other tensor of each shard, in `safe_open(...).keys()` order (a half load, as a
    /// tensor-parallel rank reads); prints the tensors read as [file, start, end] (absolute
    /// offsets in the file) in the order read, and the bytes.
    static let halfLoad = """
        import json, struct, sys, glob
        from safetensors import safe_open
        read, skipped = [], []
        for path in sorted(glob.glob(sys.argv[1] + "/transformer/*.safetensors")):
            with open(path, "rb") as raw:
                n = struct.unpack("<Q", raw.read(8))[0]
                header = json.loads(raw.read(n))
            with safe_open(path, "np") as f:
                for key in list(f.keys())[::2]:
                    f.get_tensor(key)
                    start, end = header[key]["data_offsets"]
                    read.append([path.split("/")[-1], 8 + n + start, 8 + n + end])
            skipped += [[path.split("/")[-1], 8 + n + header[k]["data_offsets"][0], 8 + n + header[k]["data_offsets"][1]]
                        for k in sorted(k for k in header if k != "__metadata__")[1::2]]
        print(json.dumps({"read": read, "skipped": skipped}))
        """

    struct Trace {
        let files: [String]
        let ranges: [(file: String, range: Range<Int64>)]
        var bytes: Int64 { ranges.reduce(0) { $0 + Int64($1.range.count) } }

        init(_ path: String) throws {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
            let names = try #require(object["files"] as? [[String: Any]]).compactMap { ($0["path"] as? String)?.split(separator: "/").last.map(String.init) }
            files = names
            ranges = try #require(object["ranges"] as? [[String: Any]]).compactMap { range -> (file: String, range: Range<Int64>)? in
                guard let file = range["file"] as? Int, let offset = (range["offset"] as? NSNumber)?.int64Value,
                      let length = (range["length"] as? NSNumber)?.int64Value, names.indices.contains(file) else { return nil }
                return (names[file], offset..<offset + length)
            }
        }

        func covers(_ file: String, _ range: Range<Int64>) -> Bool {
            RangeSet(ranges.filter { $0.file == file }.map(\.range)).contains(range)
        }

        /// The position of the first range of `file` that holds `offset`.
        func position(_ file: String, _ offset: Int64) -> Int? {
            ranges.firstIndex { $0.file == file && $0.range.contains(offset) }
        }
    }

    static func wanModels(_ fixture: MountFixture, _ arguments: [String]) throws -> (status: Int32, json: [String: Any]) {
        try fixture.wan(["models"] + arguments + ["--manifest", fixture.manifest, "--models-root", fixture.root])
    }

    /// Waits until `condition` holds (polling), up to `timeout` seconds.
    static func eventually(_ timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return try condition()
    }

    @Test func aColdLoadIsRecordedAndReplayedInItsOrderOnAnotherHost() throws {
        let (first, _, prefix) = try MountTests.safetensorsModel("traced", shards: 2, shardMiB: 64, chunkMiB: 1, tensorMiB: 8)
        let model = first.mountpoint + "/traced@1.0"
        let load = try Python.run(Self.halfLoad, [model])
        #expect(load.status == 0, "\(load.output)")
        let result = try #require(load.json as? [String: [[Any]]])
        let read = try #require(result["read"]).compactMap { entry -> (String, Range<Int64>)? in
            guard entry.count == 3, let file = entry[0] as? String, let start = entry[1] as? Int, let end = entry[2] as? Int else { return nil }
            return (file, Int64(start)..<Int64(end))
        }
        let skipped = try #require(result["skipped"]).compactMap { entry -> (String, Range<Int64>)? in
            guard entry.count == 3, let file = entry[0] as? String, let start = entry[1] as? Int, let end = entry[2] as? Int else { return nil }
            return (file, Int64(start)..<Int64(end))
        }
        let readBytes = read.reduce(Int64(0)) { $0 + Int64($1.1.count) }
        #expect(read.count >= 6 && !skipped.isEmpty && readBytes >= 48 << 20, "read \(read.count) tensors, \(readBytes) bytes")

        // Recorded once the model is idle (3 s), not at unmount.
        let tracePath = first.root + "/.state/traces/traced@1.0.json"
        #expect(Self.eventually(15) { FileManager.default.fileExists(atPath: tracePath) }, "no trace at \(tracePath)")
        let trace = try Trace(tracePath)
        for (file, range) in read { #expect(trace.covers(file, range), "the trace misses \(file) \(range)") }
        // The kernel reads around a fault (about a MiB); the middle of a skipped tensor (of the
        // 8 MiB ones: make_model.py adds a small one at the end) is never read.
        #expect(trace.bytes >= readBytes && trace.bytes <= readBytes + readBytes / 4, "trace of \(trace.bytes) bytes for \(readBytes) read")
        for (file, range) in skipped where range.count >= 4 << 20 {
            let middle = range.lowerBound + Int64(range.count) / 2
            #expect(trace.position(file, middle) == nil, "the trace holds a skipped tensor: \(file) \(range)")
        }
        // In the order the loader read them.
        let order = read.compactMap { trace.position($0.0, $0.1.lowerBound + Int64($0.1.count) / 2) }
        #expect(order.count == read.count && order == order.sorted(), "tensors in the trace at \(order)")

        // Exported here, imported on another host.
        let exported = first.dir.path + "/exported.json"
        let export = try Self.wanModels(first, ["trace", "export", "traced@1.0", "--output", exported])
        #expect(export.status == 0)
        try first.unmount()
        let second = try MountFixture(manifest: try String(contentsOfFile: first.manifest, encoding: .utf8), label: "wan-trace-2")
        let imported = try Self.wanModels(second, ["trace", "import", exported])
        #expect(imported.status == 0 && imported.json["ranges"] as? Int == trace.ranges.count, "\(imported.json)")
        let status = try Self.wanModels(second, ["status"])
        let summary = try #require(((status.json["models"] as? [[String: Any]])?.first?["trace"]) as? [String: Any])
        #expect((summary["bytes"] as? NSNumber)?.int64Value == trace.bytes && (summary["bytes_present"] as? NSNumber)?.int64Value == 0)

        try second.mount()
        let before = try TestServers.nginxRequests(containing: "/\(prefix)/").count
        func fetchedSince(_ count: Int) throws -> [(uri: String, status: Int, bytes: Int64, range: String)] {
            Array(try TestServers.nginxRequests(containing: "/\(prefix)/").dropFirst(count))
        }
        // A call that reads only a config starts no replay.
        #expect(FileManager.default.contents(atPath: second.mountpoint + "/traced@1.0/transformer/config.json") != nil)
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try fetchedSince(before).allSatisfy { !$0.uri.hasSuffix(".safetensors") }, "a config read fetched weights")

        // The load's first read starts the replay: the trace is fetched, in its order, and only it.
        let firstShard = second.mountpoint + "/traced@1.0/transformer/" + trace.files[0]
        let handle = try #require(FileHandle(forReadingAtPath: firstShard))
        _ = try handle.read(upToCount: 8)
        try handle.close()
        // Every byte of the trace as it is now: this host records its own reads too (the
        // config read above), and merges them into the trace once the model is idle for 3 s,
        // so the trace may have grown past the first host's by then. (Compared with the first
        // host's bytes, a replay slower than 3 s, as on a loaded machine, never matched.)
        let hydrated = Self.eventually(60) {
            let live = try? second.liveStatus("traced@1.0")
            let replay = live?["trace"] as? [String: Any]
            guard let bytes = (replay?["bytes"] as? NSNumber)?.int64Value,
                  let present = (replay?["bytes_present"] as? NSNumber)?.int64Value else { return false }
            return bytes >= trace.bytes && present == bytes
        }
        #expect(hydrated, "the trace was not replayed: \(String(describing: try? second.liveStatus("traced@1.0")["trace"]))")
        Thread.sleep(forTimeInterval: 1)
        let replayed = try fetchedSince(before).filter { $0.uri.hasSuffix(".safetensors") }
        let replayedBytes = replayed.reduce(Int64(0)) { $0 + $1.bytes }
        // Chunks are 1 MiB: each traced range may take up to a chunk more at either end.
        let rounding = Int64(trace.ranges.count) * (2 << 20)
        #expect(replayedBytes >= trace.bytes && replayedBytes <= trace.bytes + rounding, "replay fetched \(replayedBytes) for a trace of \(trace.bytes)")
        let modelBytes = Int64(2 * (64 << 20))
        #expect(replayedBytes < modelBytes * 3 / 4, "replay fetched \(replayedBytes) of a \(modelBytes)-byte model")
        // In the trace's order: the request that fetched each read tensor's middle.
        let asked = read.map { file, range -> Int in
            let middle = range.lowerBound + Int64(range.count) / 2
            return replayed.firstIndex { request in
                guard request.uri.hasSuffix(file), request.range.hasPrefix("bytes=") else { return false }
                let bounds = request.range.dropFirst(6).split(separator: "-").compactMap { Int64($0) }
                return bounds.count == 2 && bounds[0] <= middle && middle <= bounds[1]
            } ?? replayed.count
        }
        let inOrder = zip(asked, asked.dropFirst()).filter { $0 <= $1 + 8 }.count   // 8: parallel requests finish out of order
        #expect(Double(inOrder) >= 0.9 * Double(asked.count - 1), "tensors fetched at \(asked)")

        // The load itself then fetches (almost) nothing.
        let afterReplay = try TestServers.nginxRequests(containing: "/\(prefix)/").count
        let again = try Python.run(Self.halfLoad, [second.mountpoint + "/traced@1.0"])
        #expect(again.status == 0, "\(again.output)")
        Thread.sleep(forTimeInterval: 1)
        let during = try fetchedSince(afterReplay).reduce(Int64(0)) { $0 + $1.bytes }
        #expect(during <= 4 << 20, "the load after the replay fetched \(during) bytes")
        try second.unmount()
        try? FileManager.default.removeItem(atPath: try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix)
    }

    @Test func prefetchReplaysATraceFileInOrderWithinItsBudgetAndRefusesOneThatDoesNotFit() throws {
        let prefix = TestServers.uniqueName("prefetch")
        let model = ModelFixture(modelID: "pre@1.0", sizes: [("w.bin", 32 << 20)], chunkSize: 1 << 20, seed: 11)
        for file in model.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let fixture = try MountFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["\(http)/\(prefix)"])]), label: "wan-prefetch")
        let file = model.files[0]
        func trace(_ ranges: [(Int, Int)], sha256: String = file.sha256, size: Int = file.size) -> String {
            let list = ranges.enumerated().map { #"{"file":0,"offset":\#($1.0),"length":\#($1.1),"at":\#($0)}"# }.joined(separator: ",")
            return #"{"version":1,"model":"pre@1.0","files":[{"path":"w.bin","sha256":"\#(sha256)","size":\#(size)}],"ranges":[\#(list)],"runs":1}"#
        }
        let good = try fixture.dir.write("good.json", trace([(16 << 20, 4 << 20), (0, 4 << 20), (8 << 20, 1 << 20)]))

        // One stream, a 6 MiB budget: 16-20 MiB, then 0-2 MiB, nothing more; in that order.
        let before = try TestServers.nginxRequests(containing: "/\(prefix)/").count
        let run = try TraceMountTests.wanModels(fixture, ["prefetch", "pre@1.0", "--trace", good, "--budget", "6MiB", "--streams", "1"])
        #expect(run.status == 0, "\(run.json)")
        let outcome = try #require(run.json["outcome"] as? [String: Any])
        #expect(outcome["budget_reached"] as? Bool == true && (outcome["bytes_fetched"] as? NSNumber)?.int64Value == 6 << 20, "\(outcome)")
        let requests = Array(try TestServers.nginxRequests(containing: "/\(prefix)/").dropFirst(before))
        #expect(requests.reduce(Int64(0)) { $0 + $1.bytes } == 6 << 20, "\(requests)")
        let starts = requests.compactMap { Int64($0.range.dropFirst(6).split(separator: "-").first ?? "") }
        #expect(starts.first == 16 << 20 && starts.last.map { $0 < 2 << 20 } == true, "requests began at \(starts)")
        // Again without a budget: only what is missing.
        let rest = try TraceMountTests.wanModels(fixture, ["prefetch", "pre@1.0", "--trace", good])
        let restOutcome = try #require(rest.json["outcome"] as? [String: Any])
        #expect(rest.status == 0 && (restOutcome["bytes_already_present"] as? NSNumber)?.int64Value == 6 << 20
                && (restOutcome["bytes_fetched"] as? NSNumber)?.int64Value == 3 << 20, "\(restOutcome)")
        // Without --trace and nothing recorded: a clear error.
        let none = try TraceMountTests.wanModels(fixture, ["prefetch", "pre@1.0"])
        #expect(none.status == 2 && ((none.json["error"] as? [String: Any])?["message"] as? String)?.contains("no recorded access trace") == true, "\(none.json)")

        // Hostile or foreign traces: exit 2, the reason named, nothing written.
        let past = try fixture.dir.write("past.json", trace([(30 << 20, 4 << 20)]))
        let foreign = try fixture.dir.write("foreign.json", trace([(0, 1 << 20)], sha256: String(repeating: "0", count: 64)))
        let garbage = try fixture.dir.write("garbage.json", "{\"version\": 1, \"model\": 7}")
        for (path, reason) in [(past, "is not inside"), (foreign, "names no range"), (garbage, "not a wan access trace")] {
            let refused = try TraceMountTests.wanModels(fixture, ["trace", "import", path])
            let message = ((refused.json["error"] as? [String: Any])?["message"] as? String) ?? ""
            #expect(refused.status == 2 && message.contains(reason), "\(path): \(refused.status) \(message)")
        }
        let replayPast = try TraceMountTests.wanModels(fixture, ["prefetch", "pre@1.0", "--trace", past])
        #expect(replayPast.status == 2)
        #expect(!FileManager.default.fileExists(atPath: fixture.root + "/.state/traces/pre@1.0.json"))
        try? FileManager.default.removeItem(atPath: try TestServers.value("WAN_TEST_HTTP_ROOT") + "/" + prefix)
    }
}
