import Foundation
import Testing
@testable import WanCore

@Suite struct RegistryTests {
    @Test func variantsSelectTheirFiles() throws {
        let registry = try ModelRegistry(manifestPath: Fixtures.path("variants"))
        #expect(registry.listModels() == ["tiny@1.0.0"])

        let model = try registry.model("tiny@1.0.0")
        #expect(model.variants == ["fp16", "bf16"])
        #expect(model.defaultVariant == "fp16")
        #expect(model.files.count == 4)

        let fp16 = try registry.spec("tiny@1.0.0")
        #expect(fp16.variant == "fp16")
        #expect(fp16.files.map(\.path) == ["model_index.json", "unet/diffusion_pytorch_model.safetensors", "extras/readme.md"])
        #expect(fp16.files[1].sha256 == String(repeating: "1", count: 64))
        #expect(fp16.totalSize == 115)

        let bf16 = try registry.spec("tiny@1.0.0", variant: "BF16")
        #expect(bf16.variant == "bf16")
        #expect(bf16.files[1].sha256 == String(repeating: "b", count: 64), "sha256 is normalized to lower case")
        #expect(try registry.spec("tiny@1.0.0#bf16") == bf16)
        #expect(bf16.files.last?.optional == true)
    }

    @Test func keepsSeed004TablesAndUnknownKeys() throws {
        let spec = try ModelRegistry(manifestPath: Fixtures.path("variants")).spec("tiny@1.0.0")
        #expect(spec.resolutionCaps == ["720p24", "1080p24"])
        #expect(spec.optionalComponents == ["lora"])
        #expect(spec.allowPatterns == ["*.safetensors", "*.json"])
        #expect(spec.extra["family"] == .string("t2v"))
        let vram = try #require(spec.vramEstimation)
        #expect(vram.paramsBillion == 14)
        #expect(vram.estimatedGB == 32.5)
        #expect(vram.perResolutionGB == ["720p": 30.5, "1080p": 41])
        #expect(vram.extra["kv_cache_gb"] == .double(1.5))
        let defaults = try #require(spec.defaults)
        #expect(defaults.steps == 40)
        #expect(defaults.guidanceScale == 5.0)
        #expect(defaults.resolution == "1280x720")
        #expect(defaults.extra["scheduler"] == .string("unipc"))
    }

    @Test func chunkListsCoverTheirFiles() throws {
        let spec = try ModelRegistry(manifestPath: Fixtures.path("chunks")).spec("chunked@2.0")
        let weights = spec.files[0]
        #expect(weights.chunkSize == 4)
        #expect(weights.chunks?.count == 3)
        #expect(weights.chunkRange(0) == 0..<4)
        #expect(weights.chunkRange(2) == 8..<10)
        #expect(weights.chunkRange(3) == nil)
        #expect(spec.files[1].chunks == nil, "an empty file has no chunks")
        #expect(spec.files[2].chunkSize == 64 && spec.files[2].chunks == nil)
        #expect(spec.variant == nil && spec.defaultVariant == nil)
    }

    @Test func everySourceSchemeParses() throws {
        let registry = try ModelRegistry(manifestPath: Fixtures.path("sources"))
        let sources = try registry.spec("everywhere@1.0.0").sources.map(\.location)
        #expect(sources == [
            .local(path: "mirror/everywhere", isAbsolute: false),
            .local(path: "/srv/models/everywhere/", isAbsolute: true),
            .s3(bucket: "ai-models", prefix: "wan22/everywhere@1.0.0"),
            .s3(bucket: "bucket-only", prefix: ""),
            .huggingFace(repo: "Wan-AI/Wan2.2-T2V-A14B", revision: nil),
            .huggingFace(repo: "org/repo", revision: "0123abcd"),
            .http(base: "http://127.0.0.1:8080/models/everywhere"),
            .http(base: "https://cdn.example.com/m"),
        ])
        #expect(try registry.spec("second@3.1.4").sources.map(\.raw) == ["hf://org/second"])
        #expect(registry.manifestDirectory == URL(fileURLWithPath: Fixtures.path("sources")).deletingLastPathComponent().path)
    }

    @Test func lookupErrorsNameWhatIsAvailable() throws {
        let registry = try ModelRegistry(manifestPath: Fixtures.path("variants"))
        #expect(throws: OrchestratorError.modelNotFound(modelID: "nope@1.0", available: ["tiny@1.0.0"])) {
            try registry.spec("nope@1.0")
        }
        #expect(throws: OrchestratorError.variantNotFound(modelID: "tiny@1.0.0", variant: "int8", available: ["fp16", "bf16"])) {
            try registry.spec("tiny@1.0.0", variant: "int8")
        }
        #expect(throws: OrchestratorError.self) { try registry.spec("tiny") }
    }

    @Test func missingManifestIsAClearError() {
        do {
            _ = try ModelRegistry(manifestPath: "/nonexistent/models.toml")
            Issue.record("no error")
        } catch {
            #expect(error.code == .manifestNotFound)
            #expect(error.description.contains("/nonexistent/models.toml"))
            #expect(error.description.contains("WAN_MODELS_MANIFEST"))
        }
    }

    @Test func theExampleManifestInTheRepositoryIsValid() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let registry = try ModelRegistry(manifestPath: root.appendingPathComponent("examples/models.toml").path)
        #expect(registry.listModels() == ["i2v-A14B@2.2.0", "t2v-A14B@2.2.0", "ti2v-5b@2.2.0"])
        for id in registry.listModels() {
            let spec = try registry.spec(id)
            #expect(!spec.files.isEmpty)
            #expect(spec.sources.map(\.scheme) == ["local", "s3", "hf"])
        }
    }
}
