import Foundation
import Testing
import WanTestSupport

/// Model-aware hydration on real mounts over nginx (counted at the origin): a load that opens a
/// model's weights has its small files and every safetensors header fetched at once; a call
/// that reads only a config fetches only the config; `hydrate=lazy` fetches nothing ahead.
@Suite(.serialized) struct HydrationMountTests {
    static func requests(_ prefix: String, after count: Int) throws -> [(uri: String, status: Int, bytes: Int64, range: String)] {
        Array(try TestServers.nginxRequests(containing: "/\(prefix)/").dropFirst(count))
    }

    static func open(_ path: String) throws {
        let handle = try #require(FileHandle(forReadingAtPath: path))
        try handle.close()
    }

    @Test func openingWeightsFetchesTheModelsSmallFilesAndHeadersAndAConfigReadOnlyItsConfig() throws {
        let (mount, source, prefix) = try MountTests.safetensorsModel("hydrated", shards: 2, shardMiB: 64, chunkMiB: 1, tensorMiB: 8)
        let model = mount.mountpoint + "/hydrated@1.0"
        let shards = try FileManager.default.contentsOfDirectory(atPath: source + "/transformer").filter { $0.hasSuffix(".safetensors") }.sorted()
        #expect(shards.count == 2)

        // A config-only call: the config, nothing else.
        let config = try #require(FileManager.default.contents(atPath: model + "/transformer/config.json"))
        #expect(!config.isEmpty)
        Thread.sleep(forTimeInterval: 1.5)
        let afterConfig = try Self.requests(prefix, after: 0)
        #expect(afterConfig.map(\.uri) == ["/\(prefix)/transformer/config.json"], "a config read fetched \(afterConfig.map(\.uri))")

        // The load opens its first shard: the other small files and both headers arrive, read or not.
        try Self.open(model + "/transformer/" + shards[0])
        let fetched = { () throws -> Set<String> in Set(try Self.requests(prefix, after: afterConfig.count).map(\.uri)) }
        let others = ["model_index.json", "transformer/diffusion_pytorch_model.safetensors.index.json"] + shards.map { "transformer/" + $0 }
        let expected = Set(others.map { "/\(prefix)/\($0)" })
        let deadline = Date().addingTimeInterval(10)
        while try !expected.isSubset(of: fetched()) && Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        let hydration = try Self.requests(prefix, after: afterConfig.count)
        #expect(expected.isSubset(of: Set(hydration.map(\.uri))), "fetched \(hydration.map(\.uri)), expected \(expected.sorted())")
        // Of the weights, only their headers: the first chunk of each.
        Thread.sleep(forTimeInterval: 1)
        let weights = try Self.requests(prefix, after: afterConfig.count).filter { $0.uri.hasSuffix(".safetensors") }
        #expect(weights.reduce(Int64(0)) { $0 + $1.bytes } <= 2 << 20, "weights fetched: \(weights.map { "\($0.uri) \($0.range)" })")
        #expect(weights.allSatisfy { $0.range.hasPrefix("bytes=0-") }, "\(weights.map(\.range))")
        try mount.unmount()

        // hydrate=lazy: opening weights fetches nothing.
        try FileManager.default.removeItem(atPath: mount.root)
        let before = try TestServers.nginxRequests(containing: "/\(prefix)/").count
        try mount.mount("hydrate=lazy")
        try Self.open(model + "/transformer/" + shards[1])
        Thread.sleep(forTimeInterval: 1.5)
        let lazy = try Self.requests(prefix, after: before)
        #expect(lazy.isEmpty, "hydrate=lazy fetched \(lazy.map(\.uri))")
        try mount.unmount()
        try? FileManager.default.removeItem(atPath: source)
    }
}
