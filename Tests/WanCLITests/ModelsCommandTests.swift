import Foundation
import Testing
import WanTestSupport

/// `wan models` end to end: the real binary against manifests and cache folders on disk.
@Suite struct ModelsCommandTests {
    static let zeros = String(repeating: "0", count: 64)
    static let ones = String(repeating: "1", count: 64)
    /// One sha256 per content: a content has one size.
    static func digest(_ digit: Character) -> String { String(repeating: digit, count: 64) }

    /// Two models; `shared@1.0` and `other@1.0` both contain a 7-byte `shared.bin`.
    static let manifest = """
    schema_version = 1

    [models."shared@1.0"]
    variants = ["fp16", "bf16"]
    [[models."shared@1.0".files]]
    path = "config.json"
    size = 3
    sha256 = "\(zeros)"
    [[models."shared@1.0".files]]
    path = "unet/w.bin"
    size = 100
    sha256 = "\(digest("2"))"
    variant = "fp16"
    [[models."shared@1.0".files]]
    path = "unet/w.bin"
    size = 50
    sha256 = "\(digest("3"))"
    variant = "bf16"
    [[models."shared@1.0".files]]
    path = "shared.bin"
    size = 7
    sha256 = "\(ones)"
    [models."shared@1.0".sources]
    priority = ["local://src/shared"]

    [models."other@1.0"]
    [[models."other@1.0".files]]
    path = "shared.bin"
    size = 7
    sha256 = "\(ones)"
    [[models."other@1.0".files]]
    path = "big.bin"
    size = 1000
    sha256 = "\(digest("4"))"
    [models."other@1.0".sources]
    priority = ["s3://bucket/other"]
    """

    static let badManifest = """
    schema_version = 1
    [models."nover"]
    [[models."nover".files]]
    path = "a"
    size = 1
    sha256 = "\(zeros)"
    [models."nover".sources]
    priority = ["local://x"]

    [models."m@1.0"]
    default_variant = "int8"
    [[models."m@1.0".files]]
    path = "../escape.bin"
    size = 1
    sha256 = "\(zeros)"
    [[models."m@1.0".files]]
    path = "x.bin"
    size = -4
    sha256 = "short"
    [models."m@1.0".sources]
    priority = ["ftp://nope"]
    """

    @Test func validateManifestPrintsEveryErrorAndExits2() throws {
        let dir = try Scratch()
        let bad = try dir.write("bad.toml", Self.badManifest)
        let human = try WanProcess.run(["models", "validate-manifest", "--manifest", bad])
        #expect(human.status == 2)
        for fragment in ["nover", "version is missing", "../escape.bin", "'..'", "x.bin", "size must be between 0 and",
                         "64 hex", "ftp://", "default_variant", "6 error(s)"] {
            #expect(human.stderr.contains(fragment), "missing '\(fragment)' in:\n\(human.stderr)")
        }

        let json = try WanProcess.run(["models", "validate-manifest", "--manifest", bad, "--json"])
        #expect(json.status == 2)
        let report = try json.json()
        #expect(report["valid"] as? Bool == false)
        let errors = try #require(report["errors"] as? [[String: Any]])
        #expect(errors.count == 6)
        for error in errors {
            #expect(error["message"] is String)
            #expect(error.keys.contains("model_id") && error.keys.contains("path"))
        }
        #expect(errors.contains { $0["model_id"] as? String == "m@1.0" && $0["path"] as? String == "x.bin" })
    }

    @Test func validateManifestAcceptsAGoodManifest() throws {
        let dir = try Scratch()
        let good = try dir.write("models.toml", Self.manifest)
        let result = try WanProcess.run(["models", "validate-manifest", "--json"], environment: ["WAN_MODELS_MANIFEST": good])
        #expect(result.status == 0)
        let report = try result.json()
        #expect(report["valid"] as? Bool == true)
        #expect((report["errors"] as? [Any])?.isEmpty == true)
        #expect(report["models"] as? [String] == ["other@1.0", "shared@1.0"])
    }

    @Test func statusOnAnEmptyRootListsEveryModelAsNotPresent() throws {
        let dir = try Scratch()
        let manifest = try dir.write("models.toml", Self.manifest)
        let result = try WanProcess.run(["models", "status", "--json", "--manifest", manifest, "--models-root", dir.path + "/root"])
        #expect(result.status == 0, "\(result.stderr)")
        let models = try #require(try result.json()["models"] as? [[String: Any]])
        #expect(models.map { $0["model_id"] as? String } == ["other@1.0", "shared@1.0"])
        let expectedTotals = ["other@1.0": 1007, "shared@1.0": 110]   // default variant fp16: 3 + 100 + 7
        for model in models {
            let id = try #require(model["model_id"] as? String)
            #expect(model["state"] as? String == "NOT_PRESENT")
            #expect(model["bytes_needed"] as? Int == expectedTotals[id])
            #expect(model["bytes_total"] as? Int == expectedTotals[id])
            #expect(model["bytes_present"] as? Int == 0)
            #expect(model.keys.contains("last_verified"))
        }
        #expect(models[1]["variant"] as? String == "fp16")
        #expect((models[1]["missing_files"] as? [String])?.sorted() == ["config.json", "shared.bin", "unet/w.bin"])
    }

    @Test func statusReadsCompleteAndPartialModelsFromDisk() throws {
        let dir = try Scratch()
        let manifest = try dir.write("models.toml", Self.manifest)
        try dir.write("root/wan22/shared@1.0#bf16/config.json", "abc")
        try dir.write("root/wan22/shared@1.0#bf16/unet/w.bin", Data(count: 50))
        try dir.write("root/wan22/shared@1.0#bf16/shared.bin", Data(count: 7))
        try dir.write("root/wan22/other@1.0/shared.bin", Data(count: 7))
        try dir.write("root/wan22/other@1.0/big.bin", Data(count: 999))   // wrong size: not complete

        let env = ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": manifest]
        let bf16 = try WanProcess.run(["models", "status", "--json", "--model", "shared@1.0#bf16", "--verbose"], environment: env)
        let shared = try #require((try bf16.json()["models"] as? [[String: Any]])?.first)
        #expect(shared["state"] as? String == "COMPLETE")
        #expect(shared["bytes_needed"] as? Int == 0)
        #expect((shared["files"] as? [[String: Any]])?.count == 3)

        let other = try WanProcess.run(["models", "status", "--json", "--model", "other@1.0"], environment: env)
        let model = try #require((try other.json()["models"] as? [[String: Any]])?.first)
        #expect(model["state"] as? String == "PARTIAL")
        #expect(model["bytes_present"] as? Int == 7)
        #expect(model["bytes_needed"] as? Int == 1000)
        #expect(model["missing_files"] as? [String] == ["big.bin"])
        #expect(model["files"] == nil, "files are listed only with --verbose")

        let human = try WanProcess.run(["models", "status"], environment: env)
        #expect(human.status == 0)
        #expect(human.stderr.contains("PARTIAL") && human.stderr.contains("NOT_PRESENT"))
    }

    @Test func unknownModelsAndMissingSettingsExit2WithTheirCode() throws {
        let dir = try Scratch()
        let manifest = try dir.write("models.toml", Self.manifest)
        let unknown = try WanProcess.run(["models", "status", "--json", "--model", "nope@9.9", "--manifest", manifest,
                                          "--models-root", dir.path])
        #expect(unknown.status == 2)
        let error = try #require(try unknown.json()["error"] as? [String: Any])
        #expect(error["code"] as? String == "MODEL_NOT_FOUND")
        #expect((error["message"] as? String)?.contains("other@1.0") == true)

        let noRoot = try WanProcess.run(["models", "status", "--manifest", manifest])
        #expect(noRoot.status == 2)
        #expect(noRoot.stderr.contains("MODELS_ROOT"))

        let noManifest = try WanProcess.run(["models", "status", "--manifest", dir.path + "/missing.toml", "--models-root", dir.path])
        #expect(noManifest.status == 2)
        #expect(noManifest.stderr.contains("MANIFEST_NOT_FOUND") && noManifest.stderr.contains("missing.toml"))

        let invalid = try dir.write("bad.toml", Self.badManifest)
        let refused = try WanProcess.run(["models", "status", "--manifest", invalid, "--models-root", dir.path])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("MANIFEST_INVALID"))

        let usage = try WanProcess.run(["models", "status", "--no-such-flag"])
        #expect(usage.status == 2)
    }

    @Test func diskUsageCountsSharedFilesOnce() throws {
        let dir = try Scratch()
        let manifest = try dir.write("models.toml", Self.manifest)
        let blob = try dir.write("root/.blobs/sha256/11/\(Self.ones)", Data(repeating: 7, count: 10_000))
        for model in ["shared@1.0", "other@1.0"] {
            try FileManager.default.createDirectory(atPath: dir.path + "/root/wan22/\(model)", withIntermediateDirectories: true)
            try FileManager.default.linkItem(atPath: blob, toPath: dir.path + "/root/wan22/\(model)/shared.bin")
        }
        try dir.write("root/wan22/other@1.0/big.bin", Data(repeating: 1, count: 20_000))

        let result = try WanProcess.run(["models", "disk-usage", "--json", "--manifest", manifest, "--models-root", dir.path + "/root"])
        #expect(result.status == 0, "\(result.stderr)")
        let usage = try result.json()
        let models = try #require(usage["models"] as? [[String: Any]])
        let byID = Dictionary(uniqueKeysWithValues: models.map { ($0["model_id"] as! String, $0) })
        #expect(byID["other@1.0"]?["bytes"] as? Int == 30_000)
        #expect(byID["other@1.0"]?["shared_bytes"] as? Int == 10_000)
        #expect(byID["shared@1.0"]?["bytes"] as? Int == 10_000)
        // 10 000 shared bytes + 20 000: the blob and its two links are one inode.
        let total = try #require(usage["total_bytes"] as? Int)
        #expect(total >= 30_000 && total < 40_000, "total \(total)")
        #expect(usage["unlinked_blob_bytes"] as? Int == 0)
        #expect((usage["filesystem"] as? [String: Any])?["available_bytes"] is Int)
    }
}
