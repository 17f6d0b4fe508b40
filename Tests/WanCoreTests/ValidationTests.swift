import Testing
@testable import WanCore

/// One bad manifest per rule: each must be rejected with an issue naming the model and the
/// path (or key) at fault.
struct BadManifest: CustomTestStringConvertible, Sendable {
    let rule: String
    let toml: String
    let modelID: String?
    let path: String?
    let message: String
    var testDescription: String { rule }
}

@Suite struct ValidationTests {
    static let z = Fixtures.zeros
    static let f = Fixtures.file

    static let cases: [BadManifest] = [
        BadManifest(rule: "schema_version missing", toml: Fixtures.manifest(header: ""),
                    modelID: nil, path: "schema_version", message: "add `schema_version = 1`"),
        BadManifest(rule: "schema_version too new", toml: Fixtures.manifest(header: "schema_version = 2"),
                    modelID: nil, path: "schema_version", message: "newer than this wanfs understands"),
        BadManifest(rule: "schema_version too old", toml: Fixtures.manifest(header: "schema_version = 0"),
                    modelID: nil, path: "schema_version", message: "migrate"),
        BadManifest(rule: "schema_version not an integer", toml: Fixtures.manifest(header: #"schema_version = "1""#),
                    modelID: nil, path: "schema_version", message: "must be an integer"),
        BadManifest(rule: "id without version", toml: Fixtures.manifest(id: "t2v-A14B"),
                    modelID: "t2v-A14B", path: nil, message: "version is missing"),
        BadManifest(rule: "id with bad characters", toml: Fixtures.manifest(id: "t2v A14B@2.2.0"),
                    modelID: "t2v A14B@2.2.0", path: nil, message: "contains ' '"),
        BadManifest(rule: "id with a variant", toml: Fixtures.manifest(id: "m@1.0.0#fp16"),
                    modelID: "m@1.0.0#fp16", path: nil, message: "may not name a variant"),
        BadManifest(rule: "version mismatch", toml: Fixtures.manifest(model: #"version = "1.0.1""#),
                    modelID: "m@1.0.0", path: "version", message: "does not match"),
        BadManifest(rule: "absolute path", toml: Fixtures.manifest(files: f("/etc/passwd", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "/etc/passwd", message: "absolute"),
        BadManifest(rule: "dot-dot", toml: Fixtures.manifest(files: f("unet/../../x.bin", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "unet/../../x.bin", message: "'..'"),
        BadManifest(rule: "empty segment", toml: Fixtures.manifest(files: f("unet//x.bin", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "unet//x.bin", message: "empty segment"),
        BadManifest(rule: "trailing slash", toml: Fixtures.manifest(files: f("unet/", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "unet/", message: "empty segment"),
        BadManifest(rule: "dot segment", toml: Fixtures.manifest(files: f("./x.bin", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "./x.bin", message: "'.' segment"),
        BadManifest(rule: "backslash", toml: Fixtures.manifest(files: f(#"unet\\x.bin"#, "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: #"unet\x.bin"#, message: "backslash"),
        BadManifest(rule: "duplicate path", toml: Fixtures.manifest(files: f("a.bin", "1", nil, "", "m@1.0.0") + f("a.bin", "2", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "duplicate path"),
        BadManifest(rule: "case collision", toml: Fixtures.manifest(files: f("Config.json", "1", nil, "", "m@1.0.0") + f("config.json", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "config.json", message: "differs only in case from 'Config.json'"),
        BadManifest(rule: "folder case collision", toml: Fixtures.manifest(files: f("UNet/a.bin", "1", nil, "", "m@1.0.0") + f("unet/b.bin", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "unet/b.bin", message: "'unet' differs only in case from 'UNet'"),
        BadManifest(rule: "file used as folder", toml: Fixtures.manifest(files: f("unet", "1", nil, "", "m@1.0.0") + f("unet/a.bin", "1", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "unet", message: "other paths use it as a folder"),
        BadManifest(rule: "duplicate within a variant", toml: Fixtures.manifest(
                        model: #"variants = ["fp16", "bf16"]"#,
                        files: f("w.bin", "1", nil, "", "m@1.0.0") + f("w.bin", "1", nil, #"variant = "bf16""#, "m@1.0.0")),
                    modelID: "m@1.0.0", path: "w.bin", message: "duplicate path (listed more than once) in variant 'bf16'"),
        BadManifest(rule: "negative size", toml: Fixtures.manifest(files: f("a.bin", "-5", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "size must be between 0 and"),
        BadManifest(rule: "size not an integer", toml: Fixtures.manifest(files: f("a.bin", #""12""#, nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "'size' must be an integer"),
        BadManifest(rule: "sha256 too short", toml: Fixtures.manifest(files: f("a.bin", "1", "abc123", "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "64 hex characters"),
        BadManifest(rule: "sha256 not hex", toml: Fixtures.manifest(files: f("a.bin", "1", String(repeating: "g", count: 64), "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "64 hex characters"),
        BadManifest(rule: "missing sha256", toml: Fixtures.manifest(files: """
                        [[models."m@1.0.0".files]]
                        path = "a.bin"
                        size = 1
                        """),
                    modelID: "m@1.0.0", path: "a.bin", message: "missing required key 'sha256'"),
        BadManifest(rule: "chunks do not cover size", toml: Fixtures.manifest(files: f("a.bin", "10", nil, "chunk_size = 4\nchunks = [\"\(z)\", \"\(z)\"]", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "needs 3"),
        BadManifest(rule: "too many chunks", toml: Fixtures.manifest(files: f("a.bin", "8", nil, "chunk_size = 4\nchunks = [\"\(z)\", \"\(z)\", \"\(z)\"]", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "do not cover the file"),
        BadManifest(rule: "chunks without chunk_size", toml: Fixtures.manifest(files: f("a.bin", "8", nil, "chunks = [\"\(z)\"]", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "without chunk_size"),
        BadManifest(rule: "zero chunk_size", toml: Fixtures.manifest(files: f("a.bin", "8", nil, "chunk_size = 0", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "chunk_size must be between 1 and"),
        // Numbers that would trap anywhere downstream (Int64.max sizes, sums, chunk counts).
        BadManifest(rule: "size past the largest file", toml: Fixtures.manifest(files: f("a.bin", "9223372036854775807", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "size must be between 0 and"),
        BadManifest(rule: "sizes that add up past the limit", toml: Fixtures.manifest(files:
                        f("a.bin", "800000000000000", String(repeating: "a", count: 64), "", "m@1.0.0")
                        + f("b.bin", "800000000000000", String(repeating: "b", count: 64), "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "files", message: "add up to more than"),
        BadManifest(rule: "huge chunk_size", toml: Fixtures.manifest(files: f("a.bin", "8", nil, "chunk_size = 9223372036854775807\nchunks = [\"\(z)\"]", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "chunk_size must be between 1 and"),
        BadManifest(rule: "chunks on an empty file", toml: Fixtures.manifest(files: f("a.bin", "0", nil, "chunk_size = 1\nchunks = []", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "an empty file has no chunks"),
        BadManifest(rule: "too few chunks", toml: Fixtures.manifest(files: f("a.bin", "9", nil, "chunk_size = 4\nchunks = [\"\(z)\", \"\(z)\"]", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "do not cover the file: size 9 with chunk_size 4 needs 3"),
        BadManifest(rule: "one sha256, two sizes", toml: Fixtures.manifest(files: f("a.bin", "1", nil, "", "m@1.0.0") + f("b.bin", "2", nil, "", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "b.bin", message: "one content has one size"),
        BadManifest(rule: "bad chunk digest", toml: Fixtures.manifest(files: f("a.bin", "4", nil, "chunk_size = 4\nchunks = [\"xyz\"]", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "chunks[0] is not 64 hex"),
        BadManifest(rule: "unknown source scheme", toml: Fixtures.manifest(sources: #"priority = ["ftp://host/m"]"#),
                    modelID: "m@1.0.0", path: "sources", message: "unknown scheme 'ftp://'"),
        BadManifest(rule: "source without scheme", toml: Fixtures.manifest(sources: #"priority = ["/srv/models"]"#),
                    modelID: "m@1.0.0", path: "sources", message: "has no scheme"),
        BadManifest(rule: "bad hf source", toml: Fixtures.manifest(sources: #"priority = ["hf://just-a-repo"]"#),
                    modelID: "m@1.0.0", path: "sources", message: "hf://org/repo"),
        BadManifest(rule: "hf revision climbing out", toml: Fixtures.manifest(sources: #"priority = ["hf://org/repo@../../etc"]"#),
                    modelID: "m@1.0.0", path: "sources", message: "'.' or '..' segment"),
                BadManifest(rule: "bad s3 bucket", toml: Fixtures.manifest(sources: #"priority = ["s3://Bad_Bucket/x"]"#),
                    modelID: "m@1.0.0", path: "sources", message: "not a valid S3 bucket name"),
        BadManifest(rule: "credentials in http source", toml: Fixtures.manifest(sources: #"priority = ["https://user:pw@cdn.example.com/m"]"#),
                    modelID: "m@1.0.0", path: "sources", message: "credentials"),
        BadManifest(rule: "no sources", toml: Fixtures.manifest(sources: "priority = []"),
                    modelID: "m@1.0.0", path: "sources", message: "no sources"),
        BadManifest(rule: "no files", toml: Fixtures.manifest(files: ""),
                    modelID: "m@1.0.0", path: "files", message: "no files"),
        BadManifest(rule: "default_variant not in variants", toml: Fixtures.manifest(model: "variants = [\"fp16\"]\ndefault_variant = \"int8\""),
                    modelID: "m@1.0.0", path: "default_variant", message: "not one of the model's variants"),
        BadManifest(rule: "default_variant without variants", toml: Fixtures.manifest(model: "default_variant = \"fp16\""),
                    modelID: "m@1.0.0", path: "default_variant", message: "declares no variants"),
        BadManifest(rule: "file variant not in variants", toml: Fixtures.manifest(model: "variants = [\"fp16\"]", files: f("a.bin", "1", nil, "variant = \"bf16\"", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "variant 'bf16' is not one of"),
        BadManifest(rule: "bad variant name", toml: Fixtures.manifest(model: "variants = [\"fp 16\"]"),
                    modelID: "m@1.0.0", path: "variants", message: "may only contain"),
        BadManifest(rule: "unknown file key", toml: Fixtures.manifest(files: f("a.bin", "1", nil, "sha265 = \"x\"", "m@1.0.0")),
                    modelID: "m@1.0.0", path: "a.bin", message: "unknown key 'sha265'"),
        BadManifest(rule: "vram params not positive", toml: Fixtures.manifest(model: "vram_estimation = { params_billion = 0 }"),
                    modelID: "m@1.0.0", path: "vram_estimation.params_billion", message: "must be > 0"),
        BadManifest(rule: "vram wrong type", toml: Fixtures.manifest(model: "vram_estimation = { bytes_per_param = \"two\" }"),
                    modelID: "m@1.0.0", path: "vram_estimation.bytes_per_param", message: "must be a number"),
        BadManifest(rule: "defaults steps out of range", toml: Fixtures.manifest(model: "defaults = { steps = 0 }"),
                    modelID: "m@1.0.0", path: "defaults.steps", message: "between 1 and 10000"),
        BadManifest(rule: "defaults bad resolution", toml: Fixtures.manifest(model: "defaults = { resolution = \"big\" }"),
                    modelID: "m@1.0.0", path: "defaults.resolution", message: "1280x720 or 720p"),
        BadManifest(rule: "lora_required not bool", toml: Fixtures.manifest(model: "lora_required = \"no\""),
                    modelID: "m@1.0.0", path: "lora_required", message: "must be true or false"),
        BadManifest(rule: "model ids differing only in case", toml: Fixtures.manifest(id: "M@1.0.0", files: f("a", "1", nil, "", "M@1.0.0"))
                        + "\n" + Fixtures.manifest(id: "m@1.0.0", header: ""),
                    modelID: "m@1.0.0", path: nil, message: "differs only in case from 'M@1.0.0'"),
        BadManifest(rule: "TOML syntax error", toml: "schema_version = 1\n[models.\"m@1.0.0\"\n",
                    modelID: nil, path: "line 2", message: "TOML syntax error"),
    ]

    @Test(arguments: cases)
    func rejects(_ bad: BadManifest) {
        let registry = ModelRegistry.inspect(text: bad.toml, path: "test.toml")
        let issues = registry.validateManifest()
        let match = issues.first { $0.modelID == bad.modelID && $0.path == bad.path && $0.message.contains(bad.message) }
        #expect(match != nil, "expected [\(bad.modelID ?? "-")] \(bad.path ?? "-"): …\(bad.message)…, got \(issues)")
        // The throwing initializer refuses the same manifest and lists the same issues.
        #expect(throws: OrchestratorError.manifestInvalid(path: "test.toml", issues: issues)) {
            try ModelRegistry(text: bad.toml, path: "test.toml")
        }
    }

    @Test func reportsEveryErrorNotJustTheFirst() {
        let toml = Fixtures.manifest(
            model: "variants = [\"fp16\"]\ndefault_variant = \"bf16\"",
            files: Fixtures.file("/abs", id: "m@1.0.0") + Fixtures.file("a.bin", size: "-1", id: "m@1.0.0")
                + Fixtures.file("b.bin", sha256: "nothex", id: "m@1.0.0"),
            sources: #"priority = ["gopher://x"]"#)
        let issues = ModelRegistry.inspect(text: toml, path: "t.toml").validateManifest()
        #expect(issues.count == 5, "\(issues)")
        #expect(Set(issues.compactMap(\.path)) == ["default_variant", "/abs", "a.bin", "b.bin", "sources"])
    }

    @Test func theSchemaVersionErrorHasItsOwnCode() {
        do {
            _ = try ModelRegistry(text: Fixtures.manifest(header: "schema_version = 7"))
        } catch {
            #expect(error.code == .schemaVersion)
        }
    }

    @Test func aValidManifestHasNoIssues() {
        #expect(ModelRegistry.inspect(text: Fixtures.manifest(), path: "t").validateManifest() == [])
    }
}
