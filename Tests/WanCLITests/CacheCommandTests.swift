import Foundation
import Testing
import WanTestSupport

/// `wan models ensure/status/verify/gc/pin/migrate/manifest` as a user runs them, against
/// real servers (SeaweedFS, nginx, the fault server), counting bytes at the origin.
@Suite struct CacheCommandTests {
    struct Setup {
        let dir: Scratch
        let model: ModelFixture
        let env: [String: String]
        let root: String

        func run(_ args: String...) throws -> WanProcess.Result { try WanProcess.run(Array(args), environment: env) }
        func json(_ args: String...) throws -> [String: Any] { try WanProcess.run(Array(args) + ["--json"], environment: env).json() }
        func file(_ path: String, model id: String? = nil) throws -> Data {
            try Data(contentsOf: URL(fileURLWithPath: root + "/wan22/\(id ?? model.modelID)/" + path))
        }
    }

    /// A model on nginx under a fresh prefix, and a manifest pointing at it (plus `extraSources` first).
    static func onNginx(_ label: String, sizes: [(String, Int)], chunkSize: Int? = nil, extraSources: [String] = [],
                        config: String? = nil) throws -> (Setup, prefix: String) {
        let prefix = TestServers.uniqueName(label)
        let model = ModelFixture(modelID: "\(label)@1.0", sizes: sizes, chunkSize: chunkSize, seed: UInt64(label.count))
        for file in model.files { try TestServers.putHTTP("\(prefix)/\(file.path)", file.data) }
        let http = try TestServers.value("WAN_TEST_HTTP")
        return (try setup(model, sources: extraSources + ["\(http)/\(prefix)"], config: config), prefix)
    }

    static func setup(_ model: ModelFixture, sources: [String], config: String? = nil, extraEnv: [String: String] = [:]) throws -> Setup {
        let dir = try Scratch("wan-cli-cache")
        let manifest = try dir.write("models.toml", ModelFixture.manifest([model.manifestEntry(sources: sources)]))
        var env = ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": manifest]
        if let config { env["WAN_CONFIG"] = try dir.write("config.toml", config) }
        env.merge(extraEnv) { _, new in new }
        return Setup(dir: dir, model: model, env: env, root: dir.path + "/root")
    }

    static func state(_ report: [String: Any]) -> String? {
        (report["models"] as? [[String: Any]])?.first?["state"] as? String
    }

    @Test func ensureFromSeaweedFSIsByteExactAndASecondEnsureFetchesNothing() throws {
        let prefix = TestServers.uniqueName("s3ensure")
        let model = ModelFixture(modelID: "s3m@1.0", sizes: [("model_index.json", 400), ("unet/a b.safetensors", 5 << 20), ("vae/v.bin", 1 << 20)],
                                 chunkSize: 1 << 20, seed: 77)
        for file in model.files { try TestServers.putS3("\(prefix)/\(file.path)", file.data) }
        let s = try Self.setup(model, sources: ["s3://models/\(prefix)"], extraEnv: [
            "AWS_ENDPOINT_URL": try TestServers.value("WAN_TEST_S3_ENDPOINT"),
            "AWS_ACCESS_KEY_ID": try TestServers.value("WAN_TEST_S3_ACCESS_KEY"),
            "AWS_SECRET_ACCESS_KEY": try TestServers.value("WAN_TEST_S3_SECRET_KEY"),
        ])
        let ensure = try s.run("models", "ensure", "--only", "s3m@1.0", "--json")
        #expect(ensure.status == 0, "\(ensure.stderr)")
        let result = try #require((try ensure.json()["results"] as? [[String: Any]])?.first)
        #expect(result["ok"] as? Bool == true)
        #expect(result["bytes_downloaded"] as? Int == model.totalSize)
        for file in model.files { #expect(try s.file(file.path) == file.data, "\(file.path)") }
        #expect(Self.state(try s.json("models", "status")) == "COMPLETE")

        let again = try s.run("models", "ensure", "--only", "s3m@1.0", "--json")
        #expect((try again.json()["results"] as? [[String: Any]])?.first?["bytes_downloaded"] as? Int == 0)
        let verify = try s.run("models", "verify", "--model", "s3m@1.0", "--json")
        #expect(verify.status == 0)
        #expect(!ensure.stderr.contains(try TestServers.value("WAN_TEST_S3_SECRET_KEY")))
    }

    @Test func twoConcurrentEnsuresBothSucceedAndTheOriginServesEachByteOnce() throws {
        let (s, prefix) = try Self.onNginx("twice", sizes: [("a.bin", 24 << 20), ("b.bin", 16 << 20), ("c.json", 900)],
                                           config: "bandwidth_limit = \"60MB\"\n")
        let box = Slots<WanProcess.Result>(count: 2)
        DispatchQueue.concurrentPerform(iterations: 2) { i in
            box.set(i, try? s.run("models", "ensure", "--only", "twice@1.0"))
        }
        for result in box.values {
            #expect(result?.status == 0, "\(result?.stderr ?? "did not run")")
        }
        for file in s.model.files { #expect(try s.file(file.path) == file.data) }
        let served = try TestServers.nginxBytes(containing: "/\(prefix)/")
        #expect(served == Int64(s.model.totalSize), "nginx sent \(served) bytes for a \(s.model.totalSize)-byte model")
    }

    @Test func killDashNineMidEnsureThenARerunResumes() throws {
        // A kill loses what is in flight: at most connections × request size (8 × 16 MiB by
        // default, a few percent of a real model). This model is small, so the test scales
        // the requests down with it, and slows the download so the kill lands mid-way.
        let config = "bandwidth_limit = \"32MB\"\nchunk_size = \"1MiB\"\nmax_connections_per_source = 4\n"
        let (s, prefix) = try Self.onNginx("kill9", sizes: [("w.bin", 64 << 20)], config: config)
        let process = Process()
        process.executableURL = WanProcess.binary
        process.arguments = ["models", "ensure", "--only", "kill9@1.0"]
        process.environment = s.env.merging(["PATH": "/usr/bin:/bin"]) { a, _ in a }
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until a good part is on disk, then kill it without warning.
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, try partialBytes(s) < 16 << 20 {
            Thread.sleep(forTimeInterval: 0.1)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        let status = try #require((try s.json("models", "status")["models"] as? [[String: Any]])?.first)
        #expect(status["state"] as? String == "PARTIAL")
        let present = try #require(status["bytes_present"] as? Int)
        #expect(present > 0 && present < s.model.totalSize)
        #expect(!FileManager.default.fileExists(atPath: s.root + "/wan22/kill9@1.0/w.bin"), "nothing half-written is published")

        var env = s.env
        env.removeValue(forKey: "WAN_CONFIG")
        let rerun = try WanProcess.run(["models", "ensure", "--only", "kill9@1.0"], environment: env)
        #expect(rerun.status == 0, "\(rerun.stderr)")
        #expect(try s.file("w.bin") == s.model.files[0].data)
        let served = try TestServers.nginxBytes(containing: "/\(prefix)/")
        #expect(Double(served) < 1.2 * Double(s.model.totalSize), "fetched \(served) bytes in all for \(s.model.totalSize)")
    }

    func partialBytes(_ s: Setup) throws -> Int {
        ((try s.json("models", "status")["models"] as? [[String: Any]])?.first?["bytes_present"] as? Int) ?? 0
    }

    @Test(arguments: [true, false])
    func aCorruptByteAtTheFirstSourceFailsOverToTheSecond(chunkDigests: Bool) throws {
        let label = chunkDigests ? "fochunk" : "fowhole"
        let prefix = TestServers.uniqueName(label)
        let model = ModelFixture(modelID: "\(label)@1.0", sizes: [("w.bin", 6 << 20)], chunkSize: chunkDigests ? 1 << 20 : nil, seed: 5)
        for file in model.files {
            try TestServers.putHTTP("\(prefix)/\(file.path)", file.data)
            try TestServers.putFault("\(prefix)/\(file.path)", file.data)
        }
        let faults = try TestServers.value("WAN_TEST_FAULTS"), http = try TestServers.value("WAN_TEST_HTTP")
        let good = try Self.setup(model, sources: ["\(faults)/corrupt/\(prefix)", "\(http)/\(prefix)"])
        let ensure = try good.run("models", "ensure", "--only", "\(label)@1.0")
        #expect(ensure.status == 0, "\(ensure.stderr)")
        #expect(try good.file("w.bin") == model.files[0].data)

        let only = try Self.setup(model, sources: ["\(faults)/corrupt/\(prefix)"])
        let failed = try only.run("models", "ensure", "--only", "\(label)@1.0", "--json")
        #expect(failed.status == 1)
        let error = (try failed.json()["results"] as? [[String: Any]])?.first?["error"] as? [String: Any]
        #expect(error?["code"] as? String == "CHECKSUM_FAIL", "\(failed.stdout)")
        let state = Self.state(try only.json("models", "status"))
        #expect(state != "COMPLETE")
        if !chunkDigests { #expect(state == "CORRUPT") }
        #expect(!FileManager.default.fileExists(atPath: only.root + "/wan22/\(label)@1.0/w.bin"))
    }

    @Test func aFullDiskGivesNoSpaceAndKeepsThePreviousModels() throws {
        let dir = try Scratch("wan-cli-full")
        let small = dir.path + "/disk"
        try FileManager.default.createDirectory(atPath: small, withIntermediateDirectories: true)
        try TmpfsMount.mount(at: small, megabytes: 16)
        defer { TmpfsMount.unmount(small) }
        let first = ModelFixture(modelID: "first@1.0", sizes: [("w.bin", 8 << 20)], seed: 1)
        let second = ModelFixture(modelID: "second@1.0", sizes: [("w.bin", 12 << 20)], seed: 2)
        try first.write(to: dir.path + "/src/first")
        try second.write(to: dir.path + "/src/second")
        let manifest = try dir.write("models.toml", ModelFixture.manifest([
            first.manifestEntry(sources: ["local://src/first"]), second.manifestEntry(sources: ["local://src/second"]),
        ]))
        let env = ["MODELS_ROOT": small + "/root", "WAN_MODELS_MANIFEST": manifest]
        #expect(try WanProcess.run(["models", "ensure", "--only", "first@1.0"], environment: env).status == 0)
        let full = try WanProcess.run(["models", "ensure", "--only", "second@1.0", "--json"], environment: env)
        #expect(full.status == 1)
        let error = (try full.json()["results"] as? [[String: Any]])?.first?["error"] as? [String: Any]
        #expect(error?["code"] as? String == "NO_SPACE")
        #expect((error?["message"] as? String)?.contains("need \(12 << 20) bytes") == true)
        #expect(try WanProcess.run(["models", "verify", "--model", "first@1.0"], environment: env).status == 0)
    }

    @Test func pinsProtectModelsFromGC() throws {
        let dir = try Scratch("wan-cli-gc")
        let a = ModelFixture(modelID: "a@1.0", sizes: [("w.bin", 1 << 20)], seed: 1)
        let b = ModelFixture(modelID: "b@1.0", sizes: [("w.bin", 1 << 20)], seed: 2)
        try a.write(to: dir.path + "/src/a")
        try b.write(to: dir.path + "/src/b")
        let manifest = try dir.write("models.toml", ModelFixture.manifest([a.manifestEntry(sources: ["local://src/a"]), b.manifestEntry(sources: ["local://src/b"])]))
        let env = ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": manifest]
        #expect(try WanProcess.run(["models", "ensure", "--all"], environment: env).status == 0)
        let pin = try WanProcess.run(["models", "pin", "a@1.0", "--json"], environment: env)
        #expect(try pin.json()["pinned"] as? Bool == true)

        let dry = try WanProcess.run(["models", "gc", "--dry-run", "--max-size", "0", "--json"], environment: env).json()
        #expect(dry["models_removed"] as? [String] == ["b@1.0"])
        #expect(dry["models_preserved"] as? [String] == ["a@1.0"])
        #expect((dry["bytes_reclaimable"] as? Int ?? 0) >= 1 << 20)
        #expect(dry["bytes_reclaimed"] as? Int == 0)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/root/wan22/b@1.0/w.bin"))

        let real = try WanProcess.run(["models", "gc", "--max-size", "0B", "--json"], environment: env).json()
        #expect(real["models_removed"] as? [String] == ["b@1.0"])
        #expect(real["bytes_reclaimed"] as? Int == dry["bytes_reclaimable"] as? Int)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/root/wan22/b@1.0"))
        #expect(try WanProcess.run(["models", "verify", "--model", "a@1.0"], environment: env).status == 0)

        #expect(try WanProcess.run(["models", "unpin", "a@1.0"], environment: env).status == 0)
        let bad = try WanProcess.run(["models", "gc", "--max-size", "10G"], environment: env)
        #expect(bad.status == 2 && bad.stderr.contains("ambiguous"))
    }

    @Test func migrateImportsALegacyFolderWithoutNetwork() throws {
        let dir = try Scratch("wan-cli-migrate")
        let model = ModelFixture(modelID: "legacy@1.0", sizes: [("model_index.json", 300), ("unet/w.bin", 3 << 20)], seed: 8)
        try model.write(to: dir.path + "/old/t2v")
        try dir.write("old/t2v/unrelated.txt", "not a model file")
        try dir.write("old/decoy.bin", Data(count: 3 << 20))   // same size as w.bin, other content
        // The only source is unreachable: anything that tried the network would fail.
        let manifest = try dir.write("models.toml", ModelFixture.manifest([model.manifestEntry(sources: ["http://127.0.0.1:9/none"])]))
        let env = ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": manifest]

        let analysis = try WanProcess.run(["models", "migrate", "analyze", dir.path + "/old", "--json"], environment: env).json()
        #expect((analysis["matches"] as? [[String: Any]])?.count == 2)
        #expect(analysis["complete_models"] as? [String] == ["legacy@1.0"])
        #expect(analysis["hashed_files"] as? Int == 3, "only size matches are hashed")
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/root/wan22"), "analyze changes nothing")

        let execute = try WanProcess.run(["models", "migrate", "execute", dir.path + "/old", "--json"], environment: env)
        #expect(execute.status == 0, "\(execute.stderr)")
        let status = try WanProcess.run(["models", "status", "--json"], environment: env).json()
        #expect(Self.state(status) == "COMPLETE")
        #expect(try WanProcess.run(["models", "verify", "--all"], environment: env).status == 0)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/old/t2v/unet/w.bin"), "the legacy folder is left as it was")
    }

    @Test func manifestFromADirectoryAndFromS3DescribeTheSameBytes() throws {
        let dir = try Scratch("wan-cli-manifest")
        let model = ModelFixture(modelID: "gen@1.0", sizes: [("config.json", 200), ("w.bin", (2 << 20) + 5)], chunkSize: 1 << 20, seed: 12)
        try model.write(to: dir.path + "/m")
        let prefix = TestServers.uniqueName("gen")
        for file in model.files { try TestServers.putS3("\(prefix)/\(file.path)", file.data) }
        let env = [
            "AWS_ENDPOINT_URL": try TestServers.value("WAN_TEST_S3_ENDPOINT"),
            "AWS_ACCESS_KEY_ID": try TestServers.value("WAN_TEST_S3_ACCESS_KEY"),
            "AWS_SECRET_ACCESS_KEY": try TestServers.value("WAN_TEST_S3_SECRET_KEY"),
        ]
        let fromDir = try WanProcess.run(["models", "manifest", "--from-dir", dir.path + "/m", "--model-id", "gen@1.0",
                                          "--source", "local://m", "--chunk-size", "1MiB", "--output", dir.path + "/gen.toml"], environment: env)
        #expect(fromDir.status == 0, "\(fromDir.stderr)")
        let fromS3 = try WanProcess.run(["models", "manifest", "--from-source", "s3://models/\(prefix)", "--model-id", "gen@1.0",
                                         "--chunk-size", "1MiB", "--json"], environment: env)
        #expect(fromS3.status == 0, "\(fromS3.stderr)")
        let files = try #require(try fromS3.json()["files"] as? [[String: Any]])
        for file in model.files {
            let entry = try #require(files.first { $0["path"] as? String == file.path })
            #expect(entry["sha256"] as? String == file.sha256)
            #expect(entry["chunks"] as? [String] == file.chunks)
            #expect(entry["size"] as? Int == file.size)
        }
        // The generated manifest validates and lets ensure fetch the model.
        let ensure = try WanProcess.run(["models", "ensure", "--only", "gen@1.0"],
                                        environment: ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": dir.path + "/gen.toml"])
        #expect(ensure.status == 0, "\(ensure.stderr)")
    }

    @Test func testSourcesAndTestAuthReportEachSource() throws {
        let prefix = TestServers.uniqueName("probe")
        let model = ModelFixture(modelID: "probe@1.0", sizes: [("c.json", 100)], seed: 3)
        for file in model.files {
            try TestServers.putS3("\(prefix)/\(file.path)", file.data)
            try TestServers.putHTTP("\(prefix)/\(file.path)", file.data)
        }
        let http = try TestServers.value("WAN_TEST_HTTP")
        let s = try Self.setup(model, sources: ["s3://models/\(prefix)", "\(http)/\(prefix)"], extraEnv: [
            "AWS_ENDPOINT_URL": try TestServers.value("WAN_TEST_S3_ENDPOINT"),
            "AWS_ACCESS_KEY_ID": try TestServers.value("WAN_TEST_S3_ACCESS_KEY"),
            "AWS_SECRET_ACCESS_KEY": try TestServers.value("WAN_TEST_S3_SECRET_KEY"),
        ])
        let sources = try s.run("models", "test-sources", "--json")
        #expect(sources.status == 0, "\(sources.stderr)")
        let checks = try #require((try sources.json()["models"] as? [[String: Any]])?.first?["sources"] as? [[String: Any]])
        #expect(checks.count == 2 && checks.allSatisfy { $0["reachable"] as? Bool == true && $0["latency_ms"] is Double })
        #expect(try s.run("models", "test-auth").status == 0)

        var wrong = s.env
        wrong["AWS_SECRET_ACCESS_KEY"] = "definitely-wrong-secret"
        let auth = try WanProcess.run(["models", "test-auth", "--json"], environment: wrong)
        #expect(auth.status == 1)
        let report = try auth.json()
        #expect((report["credentials"] as? [String: String])?["AWS_SECRET_ACCESS_KEY"] == "set")
        #expect((report["sources"] as? [[String: Any]])?.first?["authenticated"] as? Bool == false)
        #expect(!auth.stdout.contains("definitely-wrong-secret") && !auth.stderr.contains("definitely-wrong-secret"))
        let down = try WanProcess.run(["models", "test-sources"], environment: wrong)
        #expect(down.status == 1)
    }

    @Test func diagnoseChecksEverything() throws {
        let s = try Self.setup(ModelFixture(modelID: "diag@1.0", sizes: [("a", 10)]), sources: ["local://src"])
        try FileManager.default.createDirectory(atPath: s.root, withIntermediateDirectories: true)
        let result = try s.run("models", "diagnose", "--offline", "--json")
        #expect(result.status == 0, "\(result.stderr)")
        let checks = try #require(try result.json()["checks"] as? [[String: Any]])
        let names = Set(checks.compactMap { $0["name"] as? String })
        #expect(names.isSuperset(of: ["manifest", "MODELS_ROOT", "free space", "state database", "locks", "partial downloads", "models",
                                      "credentials", "/dev/fuse"]))

        // A model whose bytes rotted fails the models check (the one the health API runs too).
        try s.model.write(to: s.dir.path + "/src")
        let ensured = try s.run("models", "ensure", "--only", "diag@1.0")
        #expect(ensured.status == 0, "\(ensured.stderr) \(ensured.stdout)")
        let file = s.root + "/wan22/diag@1.0/a"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[3] ^= 0x01
        chmod(file, 0o644)
        try bytes.write(to: URL(fileURLWithPath: file))
        #expect(try s.run("models", "verify", "--model", "diag@1.0").status != 0)
        let rotten = try s.run("models", "diagnose", "--offline", "--json")
        #expect(rotten.status == 1)
        let models = try #require((try rotten.json()["checks"] as? [[String: Any]])?.first { $0["name"] as? String == "models" })
        #expect(models["level"] as? String == "failed" && (models["detail"] as? String ?? "").contains("corrupt: diag@1.0"), "\(models)")
        let broken = try WanProcess.run(["models", "diagnose", "--offline"], environment: ["MODELS_ROOT": s.root, "WAN_MODELS_MANIFEST": "/nope.toml"])
        #expect(broken.status == 1 && broken.stderr.contains("manifest"))
    }
}
