import Testing
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
}
