import Foundation
import Testing
import WanCore
import WanSources
import WanTestSupport
@testable import WanCache
@testable import WanSystem

/// The cache's side of "verified": a blob gets its name only from its whole-file digest and
/// its size; a blob found on disk is adopted only at the right size; links and commits are
/// durable and collision-free.
@Suite struct TrustCacheTests {
    func engine(_ manifest: String, dir: Scratch, settings: CacheEngine.Settings? = nil, valid: Bool = true) throws -> CacheEngine {
        let path = try dir.write("models.toml", manifest)
        let config = try OrchestratorConfig.load(environment: ["MODELS_ROOT": dir.path + "/root"], manifestPath: path)
        let registry = valid ? try ModelRegistry(manifestPath: path) : try ModelRegistry.inspect(manifestPath: path)
        return try CacheEngine(config: config, registry: registry, settings: settings)
    }

    /// A manifest entry claiming another file's sha256 with size 0 and no chunks (what a
    /// careless or hostile manifest says, validation aside) never names a blob, and the model
    /// that really has that content reads its own bytes.
    @Test(arguments: [true, false]) func aManifestEntryThatLiesNeverNamesABlob(withEmptyChunkList: Bool) throws {
        let dir = try Scratch("wan-liar")
        let good = ModelFixture(modelID: "good@1.0", sizes: [("w.bin", 2 << 20)], chunkSize: 1 << 20, seed: 91)
        try good.write(to: dir.path + "/src")
        let sha = good.files[0].sha256
        let liar = """
            [models."liar@1.0"]
            [[models."liar@1.0".files]]
            path = "x.bin"
            size = 0
            sha256 = "\(sha)"
            \(withEmptyChunkList ? "chunk_size = 1\nchunks = []" : "")
            [models."liar@1.0".sources]
            priority = ["local://src"]
            """
        let engine = try engine(ModelFixture.manifest([good.manifestEntry(sources: ["local://src"]), liar]), dir: dir, valid: false)
        #expect(throws: (any Error).self) { try engine.ensure(try engine.registry.spec("liar@1.0")) }
        let blob = engine.resolver.blobPath(sha256: sha)
        #expect(!FileManager.default.fileExists(atPath: blob), "an empty file was named \(sha)")
        try engine.ensure(try engine.registry.spec("good@1.0"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/root/wan22/good@1.0/w.bin")) == good.files[0].data)
        #expect(try SHA256Hasher.hash(fileAt: blob).hex == sha)
        #expect(try engine.status(try engine.registry.spec("good@1.0")).state == .complete, "the liar's CORRUPT mark is not the good file's")
        #expect(try engine.status(try engine.registry.spec("liar@1.0")).state == .corrupt)
    }

    /// A blob of the wrong size at a content's name (a truncated copy, someone's mistake) is
    /// never adopted: it is quarantined and the content fetched and checked again.
    @Test func aBlobOfTheWrongSizeIsNeverAdopted() throws {
        let dir = try Scratch("wan-wrongsize")
        let model = ModelFixture(modelID: "m@1.0", sizes: [("w.bin", 3 << 20)], seed: 92)
        try model.write(to: dir.path + "/src")
        let engine = try engine(ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), dir: dir)
        let blob = engine.resolver.blobPath(sha256: model.files[0].sha256)
        try FileManager.default.createDirectory(atPath: (blob as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data("ten bytes!".utf8).write(to: URL(fileURLWithPath: blob))
        try engine.ensure(try engine.registry.spec("m@1.0"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/root/wan22/m@1.0/w.bin")) == model.files[0].data)
        #expect(try SHA256Hasher.hash(fileAt: blob).hex == model.files[0].sha256)
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/root/.tmp/quarantine")
        #expect(quarantined.count == 1, "the short blob is kept aside: \(quarantined)")
    }

    /// Links of one file made by several threads at once all succeed (their temporary names
    /// never collide), and the file ends up the blob.
    @Test func concurrentLinksOfOneFileNeverCollide() throws {
        let dir = try Scratch("wan-links")
        let model = ModelFixture(modelID: "m@1.0", sizes: [("unet/w.bin", 64 << 10)], seed: 93)
        try model.write(to: dir.path + "/src")
        let engine = try engine(ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), dir: dir)
        let spec = try engine.registry.spec("m@1.0")
        try engine.ensure(spec)
        let file = spec.files[0]
        try FileManager.default.removeItem(atPath: dir.path + "/root/wan22/m@1.0/unet/w.bin")
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 16) { _ in
            for _ in 0..<20 {
                do { try engine.link(file, into: "m@1.0", at: file.path) } catch { failures.add("\(error)") }
                try? FileManager.default.removeItem(atPath: dir.path + "/root/wan22/m@1.0/unet/w.bin")
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all.prefix(3))")
        try engine.link(file, into: "m@1.0", at: file.path)
        #expect(try FileSystem.info(dir.path + "/root/wan22/m@1.0/unet/w.bin")?.inode == (try FileSystem.info(engine.resolver.blobPath(sha256: file.sha256))?.inode))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/root/wan22/m@1.0/unet").filter { $0.contains("wan-link") }
        #expect(leftovers.isEmpty, "\(leftovers)")
    }

    /// A commit fsyncs the directories it changes, and a failed directory sync is an error of
    /// the fetch (not swallowed): the file is not reported complete.
    @Test func aFailedDirectorySyncFailsTheCommit() throws {
        let dir = try Scratch("wan-dirsync")
        let model = ModelFixture(modelID: "m@1.0", sizes: [("w.bin", 1 << 20)], seed: 94)
        try model.write(to: dir.path + "/src")
        var settings = CacheEngine.Settings()
        settings.threadName = "s" + UUID().uuidString.prefix(6)
        let engine = try engine(ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), dir: dir, settings: settings)
        FaultInjection.force("fsync(directory)", errno: EIO, count: 1_000, onThreadsNamed: settings.threadName)
        defer { FaultInjection.reset(onThreadsNamed: settings.threadName) }
        var failure: (any Error)?
        do { try engine.ensure(try engine.registry.spec("m@1.0")) } catch { failure = error }
        #expect("\(String(describing: failure))".contains("fsync(directory)"), "\(String(describing: failure))")
        #expect(try engine.status(try engine.registry.spec("m@1.0")).state != .complete)
        FaultInjection.reset(onThreadsNamed: settings.threadName)
        try engine.ensure(try engine.registry.spec("m@1.0"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir.path + "/root/wan22/m@1.0/w.bin")) == model.files[0].data)
    }
}

final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String] = []
    func add(_ value: String) { lock.lock(); values.append(value); lock.unlock() }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return values }
}
