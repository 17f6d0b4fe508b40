import Testing
import WanTestSupport
@testable import WanCache

@Suite struct WarmConnectionTests {
    @Test func onlyTheRootOfAnHTTPHostIsAskedNeverWithCredentials() {
        #expect(CacheEngine.root(of: "http://127.0.0.1:18080/models/x") == "http://127.0.0.1:18080/")
        #expect(CacheEngine.root(of: "HTTPS://mirror.example:8443?a=b") == "https://mirror.example:8443/")
        #expect(CacheEngine.root(of: "https://user:secret@mirror.example/models") == nil)
        #expect(CacheEngine.root(of: "s3://bucket/prefix") == nil)
        #expect(CacheEngine.root(of: "local:///data") == nil)
        #expect(CacheEngine.root(of: "https:///nothing") == nil)
    }

    /// The hosts warmed are the hosts reads go to, as each source's backend addresses them.
    /// (Only computed here: nothing is asked of these hosts.)
    @Test func theHostsWarmedAreTheOnesReadsGoTo() throws {
        let model = ModelFixture(modelID: "m@1.0", sizes: [("w.bin", 16)])
        func hosts(_ sources: [String], _ environment: [String: String]) throws -> [String] {
            let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: sources)]), environment: environment)
            return cache.engine.warmTargets()
        }
        // An S3 bucket with virtual-host addressing is a host of its own, not the endpoint.
        #expect(try hosts(["s3://weights/wan"], ["AWS_ENDPOINT_URL": "https://s3.example.test"]) == ["https://weights.s3.example.test/"])
        // With no endpoint configured: AWS's, in the configured region.
        #expect(try hosts(["s3://weights/wan"], ["AWS_REGION": "eu-west-1"]) == ["https://weights.s3.eu-west-1.amazonaws.com/"])
        // Path-style (an IP endpoint, a bucket with dots): the endpoint itself.
        #expect(try hosts(["s3://weights/wan"], ["AWS_ENDPOINT_URL": "http://127.0.0.1:8333"]) == ["http://127.0.0.1:8333/"])
        #expect(try hosts(["s3://my.weights/wan"], ["AWS_ENDPOINT_URL": "https://s3.example.test"]) == ["https://s3.example.test/"])
        // Mirrors and the Hub by their roots, once each; local sources never. (A URL with
        // credentials in it is refused by the manifest, and by `root(of:)` above.)
        #expect(try hosts(["https://mirror.example.test/a/b", "https://mirror.example.test/c", "hf://org/repo", "local://src"],
                          ["HF_ENDPOINT": "https://hub.example.test/"])
                == ["https://hub.example.test/", "https://mirror.example.test/"])
    }
}
