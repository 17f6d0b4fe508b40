import Testing
@testable import WanCore

@Suite struct ResolverTests {
    let resolver = ModelResolver(modelsRoot: "/data/models/")

    @Test func layoutIsDeterministic() throws {
        #expect(resolver.modelsRoot == "/data/models")
        #expect(resolver.modelsDir == "/data/models/wan22")
        #expect(resolver.statePath == "/data/models/.state/state.sqlite")
        #expect(resolver.tempDir(modelID: "t2v-A14B@2.2.0") == "/data/models/.tmp/t2v-A14B@2.2.0")
        #expect(resolver.modelLockPath(modelID: "t2v-A14B@2.2.0") == "/data/models/.locks/t2v-A14B@2.2.0.lock")
        let hash = String(repeating: "ab", count: 32)
        #expect(resolver.blobPath(sha256: hash) == "/data/models/.blobs/sha256/ab/\(hash)")
    }

    @Test func defaultVariantLivesInThePlainDirectory() throws {
        let registry = try ModelRegistry(text: Fixtures.variantsManifest)
        #expect(resolver.localDir(try registry.spec("tiny@1.0.0")) == "/data/models/wan22/tiny@1.0.0")
        #expect(resolver.localDir(try registry.spec("tiny@1.0.0", variant: "fp16")) == "/data/models/wan22/tiny@1.0.0")
        #expect(resolver.localDir(try registry.spec("tiny@1.0.0#bf16")) == "/data/models/wan22/tiny@1.0.0#bf16")
        #expect(resolver.localDir(try ModelID(parsing: "tiny@1.0.0#bf16")) == "/data/models/wan22/tiny@1.0.0#bf16")
    }
}
