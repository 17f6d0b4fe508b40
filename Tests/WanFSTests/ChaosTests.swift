import Foundation
import Synchronization
import Testing
import WanTestSupport

/// The chaos test: several reader processes read through one mount (sequential reads, mmap in
/// a safetensors load's order with real safetensors loads, random ranges) while other processes
/// loop `wan models ensure` (with and without --force), `gc --aggressive` and `gc --max-size`,
/// `verify --fix`, pin/unpin, and kill -9 of the daemon with a remount, over nginx and a
/// fault-injecting origin (corrupt bytes, cut connections, 503s) in front of it.
///
/// At the end: every byte any reader got was the original (each reader checks what it read),
/// every blob's sha256 is its name, no daemon died except when killed on purpose. The totals
/// are printed; `WAN_CHAOS_SECONDS` sets the length (CI: 150 s; docs/reliability.md has longer
/// runs), `WAN_CHAOS_REPORT=FILE` also writes them as JSON.
@Suite(.serialized) struct ChaosTests {
    /// What happened, counted by the threads that made it happen.
    struct Tally: Sendable {
        var ensures = 0, forcedEnsures = 0, ensureFailures = 0
        /// Why ensures failed (the first few): an ensure may fail honestly (CORRUPT while a
        /// content cools down after every source served bad bytes), never with wrong bytes.
        var ensureErrors: [String] = []
        var collections = 0, verifies = 0, pins = 0
        var kills = 0, remounts = 0
        var unexpectedDeaths: [String] = []
        var daemon: Int32 = 0
        var killing = false
    }

    @Test func chaos() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["WAN_CHAOS_SECONDS"] ?? "") ?? 150
        let faults = try TestServers.value("WAN_TEST_FAULTS")
        let http = try TestServers.value("WAN_TEST_HTTP")
        let prefix = TestServers.uniqueName("chaos")
        let chaos = "\(faults)/chaos;corrupt=0.12;reset=0.08;error=0.08/\(prefix)"

        // Three models, every file on nginx and behind the chaos origin, which comes first.
        let httpRoot = try TestServers.value("WAN_TEST_HTTP_ROOT")
        let loaderManifest = NSTemporaryDirectory() + prefix + ".toml"
        defer { try? FileManager.default.removeItem(atPath: loaderManifest) }
        let made = try Shell.run("/usr/bin/env", ["python3", TestServers.repositoryRoot + "/scripts/make_model.py", "\(httpRoot)/\(prefix)/loader",
                                                  "--shards", "2", "--shard-mib", "12", "--chunk-mib", "2", "--manifest", loaderManifest,
                                                  "--model-id", "loader@1.0", "--source", "\(chaos)/loader"])
        guard made.status == 0 else { throw TestEnvironmentError("make_model.py failed: \(made.output)") }
        let loaderFiles = try FileManager.default.subpathsOfDirectory(atPath: "\(httpRoot)/\(prefix)/loader")
            .filter { (try? FileManager.default.attributesOfItem(atPath: "\(httpRoot)/\(prefix)/loader/\($0)")[.type] as? FileAttributeType) == .typeRegular }
        for file in loaderFiles {
            try TestServers.putFault("\(prefix)/loader/\(file)", try Data(contentsOf: URL(fileURLWithPath: "\(httpRoot)/\(prefix)/loader/\(file)")))
        }
        let whole = ModelFixture(modelID: "whole@1.0", sizes: [("w.bin", 24 << 20), ("config.json", 700)], seed: 131)
        let chunked = ModelFixture(modelID: "chunked@1.0", sizes: [("w.bin", 8 << 20), ("empty.txt", 0)], chunkSize: 1 << 20, seed: 132)
        for model in [whole, chunked] {
            for file in model.files {
                try TestServers.putHTTP("\(prefix)/\(model.modelID)/\(file.path)", file.data)
                try TestServers.putFault("\(prefix)/\(model.modelID)/\(file.path)", file.data)
            }
        }
        var loaderEntry = try String(contentsOfFile: loaderManifest, encoding: .utf8)
        loaderEntry = loaderEntry.replacingOccurrences(of: "\"\(chaos)/loader\"", with: "\"\(chaos)/loader\", \"\(http)/\(prefix)/loader\"")
            .replacingOccurrences(of: "schema_version = 1", with: "")
        let manifest = ModelFixture.manifest([
            loaderEntry,
            whole.manifestEntry(sources: ["\(chaos)/whole@1.0", "\(http)/\(prefix)/whole@1.0"]),
            chunked.manifestEntry(sources: ["\(chaos)/chunked@1.0", "\(http)/\(prefix)/chunked@1.0"]),
        ])
        let mount = try MountFixture(manifest: manifest, label: "wan-chaos")
        let config = try mount.dir.write("chaos.toml", "corrupt_retry_interval = 2\nrequest_timeout = 10\nretry_attempts = 2\n")
        // verify=strict: the file without chunk digests is served only once verified whole.
        let options = "config=\(config),verify=strict,read_timeout=30"
        try mount.mount(options)

        var pairs: [String] = []
        for file in loaderFiles { pairs.append("\(mount.path("loader@1.0", file))=\(httpRoot)/\(prefix)/loader/\(file)") }
        for model in [whole, chunked] {
            for file in model.files { pairs.append("\(mount.path(model.modelID, file.path))=\(httpRoot)/\(prefix)/\(model.modelID)/\(file.path)") }
        }
        let readers = try ["seq", "mmap", "random", "random"].enumerated().map { index, mode -> (Process, Pipe) in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", TestServers.repositoryRoot + "/Tests/clients/chaos_reader.py", mode, String(seconds), String(index + 1)] + pairs
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            return (process, output)
        }

        let shared = Shared(Tally(daemon: try #require(mount.pid)))
        let environment = MountFixture.environment.merging(["MODELS_ROOT": mount.root, "WAN_MODELS_MANIFEST": mount.manifest, "WAN_CONFIG": config]) { _, new in new }
        @Sendable func wan(_ arguments: [String]) -> (status: Int32, output: String) {
            guard let result = try? Shell.run("/usr/bin/timeout", ["120", BuiltProducts.path("wan")] + arguments, environment: environment) else {
                return (-1, "")
            }
            return (result.status, result.output)
        }
        let models = ["loader@1.0", "whole@1.0", "chunked@1.0"]
        func loop(_ seed: UInt64, every range: ClosedRange<Double>, _ body: @escaping @Sendable (inout SplitMix64) -> Void) -> Thread {
            let thread = Thread {
                var random = SplitMix64(seed: seed)
                while !shared.stop.load(ordering: .relaxed) {
                    Thread.sleep(forTimeInterval: Double.random(in: range, using: &random))
                    if shared.stop.load(ordering: .relaxed) { break }
                    body(&random)
                }
            }
            thread.start()
            return thread
        }
        var threads: [Thread] = []
        threads.append(loop(1, every: 1...4) { random in
            let model = models.randomElement(using: &random)!
            let force = Int.random(in: 0..<5, using: &random) == 0
            let (status, output) = wan(["models", "ensure", "--only", model] + (force ? ["--force"] : []))
            shared.tally.withLock { t in
                t.ensures += 1
                if force { t.forcedEnsures += 1 }
                if status != 0 {
                    t.ensureFailures += 1
                    if t.ensureErrors.count < 5 { t.ensureErrors.append(String(output.suffix(400))) }
                }
            }
        })
        threads.append(loop(2, every: 2...6) { random in
            _ = wan(Bool.random(using: &random) ? ["models", "gc", "--aggressive"] : ["models", "gc", "--max-size", "1"])
            shared.tally.withLock { $0.collections += 1 }
        })
        threads.append(loop(3, every: 3...8) { random in
            _ = wan(["models", "verify", "--model", models.randomElement(using: &random)!, "--fix"])
            shared.tally.withLock { $0.verifies += 1 }
        })
        threads.append(loop(4, every: 1...3) { random in
            _ = wan(["models", Bool.random(using: &random) ? "pin" : "unpin", models.randomElement(using: &random)!])
            shared.tally.withLock { $0.pins += 1 }
        })
        threads.append(loop(5, every: 15...30) { _ in
            shared.tally.withLock { $0.killing = true }
            try? mount.killDaemon()
            let remounted = (try? mount.mount(options)) != nil
            shared.tally.withLock { t in
                t.kills += 1
                if remounted { t.remounts += 1 }
                t.daemon = mount.pid ?? 0
                t.killing = false
            }
        })
        // Watches the daemon: dead without being killed is a crash.
        threads.append(loop(6, every: 0.5...0.5) { _ in
            shared.tally.withLock { t in
                guard !t.killing, t.daemon > 0, !isRunning(t.daemon) else { return }
                t.unexpectedDeaths.append("daemon \(t.daemon) died at \(Date())")
                t.daemon = 0
            }
        })

        var reports: [[String: Any]] = []
        for (process, output) in readers {
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "a reader failed: \(String(decoding: data, as: UTF8.self))")
            let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            reports.append((try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]) ?? [:])
        }
        shared.stop.store(true, ordering: .relaxed)
        while threads.contains(where: { $0.isExecuting }) { Thread.sleep(forTimeInterval: 0.1) }

        // After the chaos: the mount is up, every model completes, every byte of every file is right.
        if !mount.isMounted { try mount.mount(options) }
        Thread.sleep(forTimeInterval: 3)   // past the cool-down of anything found bad at every source
        for model in models {
            let ensure = wan(["models", "ensure", "--only", model])
            #expect(ensure.status == 0, "\(model) completes after the chaos: \(ensure.output)")
        }
        try TrustMountTests.expectEveryBlobIsItsName(mount.root)
        for pair in pairs {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            #expect(try sha256sum(parts[0]) == (try sha256sum(parts[1])), "\(parts[0])")
        }

        func total(_ key: String) -> Int { reports.reduce(0) { $0 + (($1[key] as? Int) ?? 0) } }
        let injected = try Self.faultsInjected(prefix)
        let t = shared.tally.withLock { $0 }
        let summary: [String: Any] = [
            "seconds": seconds, "readers": reports.count, "reads": total("reads"), "bytes_checked": total("bytes"),
            "safetensors_loads": total("loads"), "eio": total("eio"), "unavailable": total("unavailable"), "wrong": total("wrong"),
            "faults_injected": injected, "ensures": t.ensures, "forced_ensures": t.forcedEnsures, "ensure_failures": t.ensureFailures,
            "collections": t.collections, "verifies": t.verifies, "pins": t.pins, "kills": t.kills, "remounts": t.remounts,
            "unexpected_daemon_deaths": t.unexpectedDeaths.count, "ensure_errors": t.ensureErrors,
            "per_reader": reports,
        ]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), as: UTF8.self)
        print("chaos: \(text)")
        if let path = ProcessInfo.processInfo.environment["WAN_CHAOS_REPORT"] { try Data(text.utf8).write(to: URL(fileURLWithPath: path)) }

        #expect(total("wrong") == 0, "a reader got bytes other than the original: \(reports.compactMap { $0["first_wrong"] as? String })")
        #expect(t.unexpectedDeaths.isEmpty, "\(t.unexpectedDeaths)")
        #expect(total("reads") > 100 && total("bytes") > 100 << 20, "the readers read: \(summary)")
        #expect((injected["corrupt"] ?? 0) > 0 && t.kills > 0 && t.ensures > 0 && t.collections > 0, "the chaos happened: \(summary)")
        try mount.unmount()
    }

    /// Faults the chaos origin injected for this run, by kind.
    static func faultsInjected(_ prefix: String) throws -> [String: Int] {
        let result = try Shell.run("/usr/bin/curl", ["-sS", "--max-time", "10", try TestServers.value("WAN_TEST_FAULTS") + "/_stats"])
        let stats = (try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: [String: Any]]) ?? [:]
        var totals: [String: Int] = [:]
        for (key, entry) in stats where key.contains(prefix) {
            for (kind, count) in (entry["faults"] as? [String: Int]) ?? [:] { totals[kind, default: 0] += count }
        }
        return totals
    }
}

/// What the chaos threads share.
final class Shared: Sendable {
    let tally: Mutex<ChaosTests.Tally>
    let stop = Atomic<Bool>(false)
    init(_ tally: ChaosTests.Tally) { self.tally = Mutex(tally) }
}

/// Whether `pid` is a live process (not gone, not a zombie nobody reaped).
func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
    return stat[stat.index(close, offsetBy: 2)] != "Z"
}
