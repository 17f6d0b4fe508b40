import Foundation
import Testing
import WanCore
import WanSystem
import WanTestSupport
@testable import WanSources

/// Listing, authentication, missing files and Hub specifics against the real servers.
@Suite struct ServerBehaviourTests {
    // MARK: Listing

    @Test func s3ListingFollowsContinuationTokens() throws {
        let name = TestServers.uniqueName("list")
        for i in 0..<5 { try TestServers.putS3("\(name)/m/f\(i).bin", testBytes(10 + i)) }
        try TestServers.putS3("\(name)/m/sub/deep.bin", testBytes(3))
        try TestServers.putS3("\(name)/other.bin", testBytes(3))
        var store = try Servers.s3("\(name)/m")
        store.listPageSize = 2
        let files = try store.list(prefix: "", cancel: .none)
        #expect(files.map(\.path) == ["f0.bin", "f1.bin", "f2.bin", "f3.bin", "f4.bin", "sub/deep.bin"])
        #expect(files.map(\.size) == [10, 11, 12, 13, 14, 3])
        #expect(try store.list(prefix: "sub", cancel: .none).map(\.path) == ["sub/deep.bin"])
    }

    @Test func hubListingFollowsLinkPagesAndCarriesLFSDigests() throws {
        let name = TestServers.uniqueName("tree")
        var files: [String: Data] = [:]
        for i in 0..<7 { files["small/f\(i).json"] = testBytes(100 + i, seed: UInt64(i)) }
        let big = testBytes(2 << 20, seed: 99)
        files["weights.bin"] = big
        try TestServers.putHF(repo: "wan-test/\(name)", files: files)
        var store = try Servers.hub("wan-test/\(name)")
        store.listPageSize = 3
        let listed = try store.list(prefix: "", cancel: .none)
        #expect(listed.count == 8)
        #expect(listed.first { $0.path == "weights.bin" }?.sha256 == sha256Hex(big))
        #expect(listed.first { $0.path == "small/f3.json" }?.size == 103)
        let pages = try TestServers.hfRequests(containing: "/api/models/wan-test/\(name)/tree").count
        #expect(pages >= 3, "pagination needs several pages, saw \(pages)")
    }

    @Test func olahListingFollowsItsRedirect() throws {
        let listed = try Servers.olah().list(prefix: "", cancel: .none)
        #expect(listed.map(\.path) == ["config.json", "weights.bin"])
        #expect(listed.last?.sha256 == sha256Hex(try Servers.sampleWeights()))
    }

    @Test func aPlainMirrorCannotList() throws {
        #expect(sourceError { _ = try Servers.http("x").list(prefix: "", cancel: .none) }?.kind == .unsupported)
    }

    // MARK: Authentication

    @Test func s3AuthFailuresSayWhatToFixWithoutTheSecret() throws {
        let name = TestServers.uniqueName("auth")
        try TestServers.putS3("\(name)/a.bin", testBytes(100))
        let secret = "wrong-secret-\(UUID().uuidString)"
        let wrong = sourceError { _ = try Servers.s3(name, secret: secret).stat("a.bin", cancel: .none) }
        #expect(wrong?.kind == .unauthorized)
        #expect(wrong?.message.contains("SignatureDoesNotMatch") == true)
        #expect(wrong?.message.contains("AWS_SECRET_ACCESS_KEY") == true)
        #expect(wrong.map { !"\($0)".contains(secret) } == true)

        let anonymous = sourceError { _ = try readRange(Servers.s3(name, anonymous: true), "a.bin", 0..<10) }
        #expect(anonymous?.kind == .forbidden, "\(String(describing: anonymous))")
        #expect(anonymous?.message.contains("no credentials are configured") == true)

        let readOnly = try Servers.s3(name, key: TestServers.value("WAN_TEST_S3_RO_ACCESS_KEY"), secret: TestServers.value("WAN_TEST_S3_RO_SECRET_KEY"))
        #expect(try readRange(readOnly, "a.bin", 0..<100) == testBytes(100))
    }

    @Test func gatedHubRepositoriesNeedTheToken() throws {
        let name = TestServers.uniqueName("gated")
        let data = testBytes(1500, seed: 5)
        try TestServers.putHF(repo: "wan-test/\(name)", files: ["config.json": data], gated: true)
        let token = try TestServers.value("WAN_TEST_HF_TOKEN")

        let none = sourceError { _ = try Servers.hub("wan-test/\(name)").stat("config.json", cancel: .none) }
        #expect(none?.kind == .unauthorized)
        #expect(none?.message.contains("gated") == true && none?.message.contains("HF_TOKEN") == true)

        let badToken = "hf_wan_invalid_token"
        let bad = sourceError { _ = try Servers.hub("wan-test/\(name)", token: badToken).stat("config.json", cancel: .none) }
        #expect(bad?.code.rawValue == "AUTH_FAILED", "\(String(describing: bad))")
        #expect(bad.map { !"\($0)".contains(badToken) } == true)

        #expect(try readRange(Servers.hub("wan-test/\(name)", token: token), "config.json", 0..<1500) == data)
    }

    // MARK: Missing things

    @Test func missingFilesAndRevisionsAreNamed() throws {
        let name = TestServers.uniqueName("missing")
        try TestServers.putHF(repo: "wan-test/\(name)", files: ["a.json": testBytes(10)])
        let entry = sourceError { _ = try Servers.hub("wan-test/\(name)").stat("nope.bin", cancel: .none) }
        #expect(entry?.kind == .notFound && entry?.message.contains("nope.bin not found in wan-test/\(name)") == true, "\(String(describing: entry))")
        let revision = sourceError { _ = try Servers.hub("wan-test/\(name)", revision: "v9").stat("a.json", cancel: .none) }
        #expect(revision?.kind == .notFound && revision?.message.contains("revision 'v9' not found") == true, "\(String(describing: revision))")
        let repo = sourceError { _ = try Servers.hub("wan-test/no-such-\(name)").stat("a.json", cancel: .none) }
        #expect(repo?.kind == .notFound && repo?.message.contains("repository wan-test/no-such-\(name) not found") == true, "\(String(describing: repo))")

        let key = sourceError { _ = try Servers.s3(name).stat("nope.bin", cancel: .none) }
        #expect(key?.kind == .notFound && key?.message.contains("s3://models/\(name)/nope.bin not found") == true, "\(String(describing: key))")
        let read = sourceError { _ = try readRange(Servers.s3(name), "nope.bin", 0..<5) }
        #expect(read?.kind == .notFound && read?.message.contains("NoSuchKey") == false)
        let bucket = sourceError { _ = try readRange(Servers.s3("x", bucket: "no-such-bucket-\(name)"), "a", 0..<5) }
        #expect(bucket?.kind == .notFound && bucket?.message.contains("does not exist") == true, "\(String(describing: bucket))")
        let moto = sourceError { _ = try readRange(Servers.s3("x", endpoint: TestServers.value("WAN_TEST_MOTO"), key: "testing", secret: "testing", bucket: "moto-\(name)"), "a.bin", 0..<5) }
        #expect(moto?.kind == .notFound, "\(String(describing: moto))")
        let page = sourceError { _ = try Servers.http(name).stat("nope.bin", cancel: .none) }
        #expect(page?.kind == .notFound && page?.status == 404)
    }

    @Test func wrongRegionErrorsNameTheRightRegion() throws {
        // AWS's answer to a request signed for the wrong region (neither SeaweedFS nor moto checks regions).
        let store = try Servers.s3("p")
        let body = Array("""
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>AuthorizationHeaderMalformed</Code><Message>The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'</Message><Region>eu-west-1</Region></Error>
            """.utf8)
        let error = store.classify(HTTPResponse(status: 400, headers: [:], body: body, bytesReceived: 0, url: "u"), key: "k")
        #expect(error?.kind == .misconfigured)
        #expect(error?.message.contains("set AWS_REGION=eu-west-1") == true)
        let redirect = store.classify(HTTPResponse(status: 301, headers: ["x-amz-bucket-region": "ap-south-1"], body: [], bytesReceived: 0, url: "u"), key: "k")
        #expect(redirect?.message.contains("AWS_REGION=ap-south-1") == true)
    }

    // MARK: The Hub's redirect to a CDN

    @Test func largeHubFilesComeFromTheCDNWithoutTheToken() throws {
        let name = TestServers.uniqueName("cdn")
        let big = testBytes(3 << 20, seed: 21)
        let commit = String(repeating: "c0ffee12", count: 5)
        try TestServers.putHF(repo: "wan-test/\(name)", files: ["model.safetensors": big], commit: commit)
        let token = try TestServers.value("WAN_TEST_HF_TOKEN")
        let store = try Servers.hub("wan-test/\(name)", token: token)
        let info = try store.stat("model.safetensors", cancel: .none)
        #expect(info.size == Int64(big.count))
        #expect(info.sha256 == sha256Hex(big), "sha256 from X-Linked-Etag")
        #expect(info.revision == commit, "commit from X-Repo-Commit")

        #expect(try readRange(store, "model.safetensors", 0..<1000) == big[0..<1000])
        #expect(try readRange(store, "model.safetensors", 2_000_000..<3_000_000) == big[2_000_000..<3_000_000])
        let log = try TestServers.hfRequests(containing: "/\(name)/")
        let cdn = log.filter { $0["server"] as? String == "cdn" }
        let hub = log.filter { $0["server"] as? String == "hub" }
        #expect(cdn.count == 2 && cdn.allSatisfy { $0["auth"] as? Bool == false && $0["status"] as? Int == 206 }, "\(cdn)")
        #expect(hub.count == 1, "the CDN location is remembered: one HEAD at the hub, then ranges straight to the CDN")
        #expect(hub.allSatisfy { $0["auth"] as? Bool == true })
    }

    @Test func aPinnedRevisionIsUsed() throws {
        let name = TestServers.uniqueName("pin")
        try TestServers.putHF(repo: "wan-test/\(name)", revision: "main", files: ["c.json": Data("main".utf8)])
        try TestServers.putHF(repo: "wan-test/\(name)", revision: "v1", files: ["c.json": Data("v1!!".utf8)])
        #expect(try readRange(Servers.hub("wan-test/\(name)", revision: "v1"), "c.json", 0..<4) == Data("v1!!".utf8))
        #expect(try readRange(Servers.hub("wan-test/\(name)"), "c.json", 0..<4) == Data("main".utf8))
    }

    // MARK: Secrets

    @Test func credentialsNeverAppearInErrors() throws {
        let secret = "s3cr3t-\(UUID().uuidString)"
        let token = "hf_tok_\(UUID().uuidString)"
        var texts: [String] = []
        texts.append("\(String(describing: sourceError { _ = try Servers.s3("x", key: "AKIDSECRET", secret: secret).stat("a", cancel: .none) }))")
        texts.append("\(String(describing: sourceError { _ = try Servers.hub("wan-test/none", token: token).stat("a", cancel: .none) }))")
        texts.append("\(String(describing: sourceError { _ = try readRange(Servers.hub("wan-test/none", token: token), "a", 0..<1) }))")
        for text in texts {
            #expect(!text.contains(secret) && !text.contains(token), "\(text)")
        }
    }
}

/// sha256 hex of test data, via OpenSSL.
func sha256Hex(_ data: Data) -> String { SHA256Hasher.hash(Array(data)).hex }
