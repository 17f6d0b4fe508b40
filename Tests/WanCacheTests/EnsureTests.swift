import Foundation
import Testing
import WanCore
import WanSources
import WanTestSupport
@testable import WanCache
@testable import WanSystem

@Suite struct EnsureTests {
    static let big = 9 << 20

    func fixture(_ id: String = "m@1.0.0", chunkSize: Int? = nil, seed: UInt64 = 1) -> ModelFixture {
        ModelFixture(modelID: id, sizes: [("config.json", 321), ("unet/w.safetensors", Self.big), ("empty.txt", 0)],
                     chunkSize: chunkSize, seed: seed)
    }

    func downloads(_ cache: CacheFixture) throws -> [StateStore.DownloadRecord] {
        try cache.engine.state()?.downloads() ?? []
    }

    @Test func ensuresAMultiFileModelByteExactAndOnce() throws {
        let model = fixture()
        let dir = try Scratch("wan-ensure")
        try model.write(to: dir.path + "/src")
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), dir: dir)
        let spec = try cache.spec("m@1.0.0")
        #expect(try cache.engine.status(spec).state == .notPresent)
        #expect(try cache.engine.estimateDownloadSize(spec) == Int64(model.totalSize))

        let seen = ProgressLog()
        let path = try cache.engine.ensure(spec) { seen.add($0, $1) }
        #expect(path == cache.root + "/wan22/m@1.0.0")
        for file in model.files { #expect(try cache.modelFile("m@1.0.0", file.path) == file.data, "\(file.path)") }
        let status = try cache.engine.status(spec)
        #expect(status.state == .complete && status.bytesNeeded == 0 && status.bytesPresent == Int64(model.totalSize))
        #expect(seen.last?.0 == Int64(model.totalSize) && seen.last?.1 == Int64(model.totalSize))
        #expect(seen.isMonotonic)

        // Blobs are content-addressed, read-only, and the model files are hard links to them.
        let weights = model.file("unet/w.safetensors")
        let blob = cache.engine.resolver.blobPath(sha256: weights.sha256)
        let blobInfo = try #require(try FileSystem.info(blob))
        #expect(blobInfo.mode & 0o777 == 0o444)
        #expect(try FileSystem.info(path + "/unet/w.safetensors")?.inode == blobInfo.inode)
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache.engine.resolver.tmpDir).filter { !$0.hasPrefix(".") }.isEmpty,
                "no partial files left behind")

        let fetched = try downloads(cache).filter { $0.outcome == "completed" }.reduce(0) { $0 + $1.bytes }
        #expect(fetched == Int64(model.totalSize))
        // A second ensure fetches nothing.
        try cache.engine.ensure(spec)
        #expect(try downloads(cache).filter { $0.outcome == "completed" }.reduce(0) { $0 + $1.bytes } == fetched)
        #expect(try cache.engine.estimateDownloadSize(spec) == 0)
    }

    @Test func contentSharedByTwoModelsIsStoredAndFetchedOnce() throws {
        let a = fixture("a@1.0")
        let b = ModelFixture(modelID: "b@1.0", sizes: [("other.bin", 4096)], seed: 9)
        let dir = try Scratch("wan-dedup")
        try a.write(to: dir.path + "/src")
        try b.write(to: dir.path + "/src")
        // b also lists a's weights under another path.
        let weights = a.file("unet/w.safetensors")
        let entryB = b.manifestEntry(sources: ["local://src"]).replacingOccurrences(of: "[models.\"b@1.0\".sources]", with: """
            [[models."b@1.0".files]]
            path = "unet/w.safetensors"
            size = \(weights.size)
            sha256 = "\(weights.sha256)"

            [models."b@1.0".sources]
            """)
        let cache = try CacheFixture(manifest: ModelFixture.manifest([a.manifestEntry(sources: ["local://src"]), entryB]), dir: dir)
        try cache.engine.ensure(try cache.spec("a@1.0"))
        #expect(try cache.engine.estimateDownloadSize(try cache.spec("b@1.0")) == 4096)
        try cache.engine.ensure(try cache.spec("b@1.0"))
        let inodeA = try FileSystem.info(cache.root + "/wan22/a@1.0/unet/w.safetensors")?.inode
        let inodeB = try FileSystem.info(cache.root + "/wan22/b@1.0/unet/w.safetensors")?.inode
        #expect(inodeA != nil && inodeA == inodeB)
        let weightDownloads = try downloads(cache).filter { $0.sha256 == weights.sha256 }
        #expect(weightDownloads.count == 1)
        let usage = try DiskUsage.measure(cache.engine.resolver)
        #expect(usage.models.first { $0.directory == "b@1.0" }?.sharedBytes == Int64(weights.size))
    }

    @Test func aCorruptChunkFailsOverToTheNextSource() throws {
        let model = fixture(chunkSize: 1 << 20)
        let dir = try Scratch("wan-chunk")
        try model.write(to: dir.path + "/bad")
        try model.write(to: dir.path + "/good")
        var corrupted = model.file("unet/w.safetensors").data
        corrupted[5_000_000] ^= 0x01
        try dir.write("bad/unet/w.safetensors", corrupted)
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://bad", "local://good"])]), dir: dir)
        try cache.engine.ensure(try cache.spec("m@1.0.0"))
        #expect(try cache.modelFile("m@1.0.0", "unet/w.safetensors") == model.file("unet/w.safetensors").data)
        #expect(try cache.engine.status(try cache.spec("m@1.0.0")).state == .complete)
    }

    @Test func aCorruptOnlySourceEndsInChecksumFailureNeverComplete() throws {
        let model = fixture(chunkSize: 1 << 20)
        let dir = try Scratch("wan-corrupt")
        try model.write(to: dir.path + "/bad")
        var corrupted = model.file("unet/w.safetensors").data
        corrupted[123] ^= 0xFF
        try dir.write("bad/unet/w.safetensors", corrupted)
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://bad"])]), dir: dir)
        let spec = try cache.spec("m@1.0.0")
        do {
            try cache.engine.ensure(spec)
            Issue.record("ensure succeeded with corrupt bytes")
        } catch let error as AllSourcesFailedError {
            #expect(error.code == .checksumFail)
            #expect(error.description.contains("does not match its digest"))
        }
        #expect(!FileManager.default.fileExists(atPath: cache.engine.resolver.blobPath(sha256: model.file("unet/w.safetensors").sha256)))
        #expect(try cache.engine.status(spec).state != .complete)
    }

    @Test func aWholeFileMismatchIsQuarantinedAndRefetchedElsewhere() throws {
        let model = fixture()   // no chunk digests: only the whole-file hash can catch it
        let dir = try Scratch("wan-whole")
        try model.write(to: dir.path + "/bad")
        try model.write(to: dir.path + "/good")
        var corrupted = model.file("unet/w.safetensors").data
        corrupted[8_000_000] ^= 0x10
        try dir.write("bad/unet/w.safetensors", corrupted)
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://bad", "local://good"])]), dir: dir)
        try cache.engine.ensure(try cache.spec("m@1.0.0"))
        #expect(try cache.modelFile("m@1.0.0", "unet/w.safetensors") == model.file("unet/w.safetensors").data)
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: cache.engine.resolver.tmpDir + "/quarantine")
        let history = try downloads(cache).map { "\($0.source ?? "-") \($0.outcome)" }
        #expect(quarantined.count == 1, "the bad source is asked once: \(quarantined), \(history)")
        #expect(try downloads(cache).contains { $0.outcome == "corrupt" && $0.source == "local://bad" })
    }

    @Test func aWholeFileMismatchAtEverySourceIsCorrupt() throws {
        let model = fixture()
        let dir = try Scratch("wan-allbad")
        try model.write(to: dir.path + "/src")
        let wrong = String(repeating: "0", count: 64)
        let cache = try CacheFixture(manifest: ModelFixture.manifest([
            model.manifestEntry(sources: ["local://src"], overrideSHA: ["unet/w.safetensors": wrong]),
        ]), dir: dir)
        let spec = try cache.spec("m@1.0.0")
        #expect(throws: OrchestratorError.self) { try cache.engine.ensure(spec) }
        let status = try cache.engine.status(spec)
        #expect(status.state == .corrupt)
        #expect(status.files.first { $0.path == "unet/w.safetensors" }?.state == .corrupt)
        #expect(!FileManager.default.fileExists(atPath: cache.engine.resolver.blobPath(sha256: wrong)))
    }

    @Test func aDiskThatFillsMidDownloadLeavesAResumablePartial() throws {
        let model = fixture()
        let dir = try Scratch("wan-enospc")
        try model.write(to: dir.path + "/src")
        var settings = CacheEngine.Settings()
        settings.threadName = "e" + UUID().uuidString.prefix(6)   // Linux keeps 15 characters of a thread name
        settings.jobSize = 1 << 20
        settings.blockSize = 1 << 20
        settings.connections = 1
        settings.persistBytes = 1
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]),
                                     settings: settings, dir: dir)
        let spec = try cache.spec("m@1.0.0")
        let weights = model.file("unet/w.safetensors")
        // The small file fits; then the disk is "full" for the fetch threads.
        try cache.engine.ensure(spec.with(variant: nil, files: [model.file("config.json")].map { file in spec.files.first { $0.path == file.path }! }))
        FaultInjection.force("pwrite", errno: ENOSPC, count: 1_000, onThreadsNamed: settings.threadName)
        defer { FaultInjection.reset(onThreadsNamed: settings.threadName) }
        var failure: (any Error)?
        do { try cache.engine.ensure(spec) } catch { failure = error }
        let coded = try #require(failure as? any CodedError, "ensure did not fail: \(String(describing: failure))")
        #expect(coded.code == .noSpace, "\(coded)")
        #expect(!FileManager.default.fileExists(atPath: cache.engine.resolver.blobPath(sha256: weights.sha256)))
        #expect(try cache.engine.status(spec).state != .complete)
        FaultInjection.reset(onThreadsNamed: settings.threadName)

        // Resume: the same engine, or a fresh one reading the range map.
        let resumed = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), dir: dir)
        try resumed.engine.ensure(try resumed.spec("m@1.0.0"))
        #expect(try resumed.modelFile("m@1.0.0", "unet/w.safetensors") == weights.data)
    }

    @Test func anInterruptedDownloadResumesFromItsMap() throws {
        let model = ModelFixture(modelID: "m@1.0.0", sizes: [("w.bin", 24 << 20)], seed: 3)
        let dir = try Scratch("wan-resume")
        try model.write(to: dir.path + "/src")
        var settings = CacheEngine.Settings()
        settings.jobSize = 1 << 20
        settings.blockSize = 1 << 20
        settings.connections = 2
        settings.persistBytes = 1
        let manifest = ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])])
        let first = try CacheFixture(manifest: manifest, settings: settings, dir: dir)
        let spec = try first.spec("m@1.0.0")
        let cancel = CancellationToken()
        let stopAt = Int64(10 << 20)
        do {
            try first.engine.ensure(spec, cancel: cancel) { done, _ in if done >= stopAt { cancel.cancel() } }
            Issue.record("not interrupted")
        } catch {
            #expect((error as? any CodedError)?.code == .cancelled, "\(error)")
        }
        let status = try first.engine.status(spec)
        #expect(status.state == .partial)
        #expect(status.bytesPresent >= stopAt && status.bytesPresent < Int64(model.totalSize))

        let second = try CacheFixture(manifest: manifest, settings: settings, dir: dir)
        let before = try second.engine.estimateDownloadSize(spec)
        #expect(before <= Int64(model.totalSize) - stopAt)
        try second.engine.ensure(spec)
        #expect(try second.modelFile("m@1.0.0", "w.bin") == model.file("w.bin").data)
        let total = try second.engine.state()!.downloads().filter { $0.outcome == "completed" }.reduce(0) { $0 + $1.bytes }
        #expect(total < Int64(Double(model.totalSize) * 1.2), "refetched \(total) bytes in all")
    }

    /// Chunks recorded by an earlier process are not trusted as chunks verified in passing
    /// are: a power loss can leave the map ahead of the data. Such a file is hashed whole
    /// before it is committed, so bad bytes behind a map entry are caught and fetched again.
    /// What a power loss can leave: a map saying chunks 0 and 1 are here, chunk 1's bytes never written.
    func staleMap() throws -> (CacheFixture, ModelSpec, ModelFixture.File) {
        let model = ModelFixture(modelID: "m@1.0.0", sizes: [("w.bin", 4 << 20)], chunkSize: 1 << 20, seed: 5)
        let dir = try Scratch("wan-stale-map")
        try model.write(to: dir.path + "/src")
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), dir: dir)
        let file = model.file("w.bin")
        let tmp = cache.engine.resolver.tmpDir
        try FileSystem.createDirectories(tmp)
        var stale = file.data
        stale.replaceSubrange((1 << 20)..<(2 << 20), with: Data(count: 1 << 20))
        try stale.write(to: URL(fileURLWithPath: tmp + "/\(file.sha256).part"))
        let part = try #require(try FileSystem.info(tmp + "/\(file.sha256).part")).identity
        let (log, _) = try RangeMapLog.open(in: try Directory.open(tmp), name: "\(file.sha256).map", size: Int64(file.data.count),
                                            sha256: file.sha256, partial: part)
        try log.append([0..<(2 << 20)])
        return (cache, try cache.spec("m@1.0.0"), file)
    }

    @Test func chunksRecordedByAnEarlierProcessAreCheckedByTheWholeFileDigest() throws {
        let (cache, spec, file) = try staleMap()
        let tmp = cache.engine.resolver.tmpDir
        try cache.engine.ensure(spec)
        #expect(try cache.modelFile("m@1.0.0", "w.bin") == file.data, "the zeroed chunk was caught and fetched again")
        let quarantined = try FileManager.default.contentsOfDirectory(atPath: tmp + "/quarantine")
        #expect(quarantined.contains { $0.hasPrefix(file.sha256) }, "the bad partial is kept aside: \(quarantined)")
    }

    /// A read never gets a recorded chunk that does not match its digest: it is hashed
    /// before it is first served, and a bad one is fetched again.
    @Test func aRecordedChunkIsCheckedBeforeItIsServed() throws {
        let (cache, spec, file) = try staleMap()
        let fetcher = try cache.engine.fetcher(for: try #require(spec.files.first { $0.path == "w.bin" }), of: spec)
        var buffer = [UInt8](repeating: 0, count: 2 << 20)
        let n = try buffer.withUnsafeMutableBytes { try fetcher.read(into: $0, at: 0, timeout: 30) }
        #expect(n == 2 << 20)
        let served = Data(buffer) == file.data[0..<(2 << 20)]   // a Bool: a failed expectation on 2 MiB of Data would diff them for minutes
        #expect(served, "chunk 0 (good on disk) kept, chunk 1 (zeros on disk) fetched again")
        #expect(!fetcher.snapshot.fetchedHere, "chunks from an earlier map: the whole file is read back for its digest")
        try cache.engine.ensure(spec)
        #expect(try cache.modelFile("m@1.0.0", "w.bin") == file.data)
        let quarantine = cache.engine.resolver.tmpDir + "/quarantine"
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: quarantine)) ?? []).isEmpty,
                "the bad chunk was replaced before the whole-file digest, which then matched")
    }

    /// The fetcher lets go of a file between reads once nothing is in flight, and reopens its
    /// range map at the next one. That map holds only what this process wrote and checked
    /// itself: the whole-file digest goes on from where it was, not read back from the start.
    @Test func aMapReopenedByTheSameFetcherKeepsItsDigest() throws {
        let model = ModelFixture(modelID: "m@1.0.0", sizes: [("w.bin", 4 << 20)], chunkSize: 1 << 20, seed: 6)
        let dir = try Scratch("wan-reopen-map")
        try model.write(to: dir.path + "/src")
        let manifest = ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])])
        var settings = CacheEngine.Settings(try OrchestratorConfig.load(environment: ["MODELS_ROOT": dir.path + "/root"], manifestPath: try dir.write("m.toml", manifest)))
        settings.jobSize = 1 << 20   // one chunk per job: the first read leaves the rest unfetched
        let cache = try CacheFixture(manifest: manifest, settings: settings, dir: dir)
        let spec = try cache.spec("m@1.0.0")
        let fetcher = try cache.engine.fetcher(for: try #require(spec.files.first { $0.path == "w.bin" }), of: spec)
        let file = model.file("w.bin")
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        for chunk in 0..<2 {
            let n = try buffer.withUnsafeMutableBytes { try fetcher.read(into: $0, at: Int64(chunk) << 20, timeout: 30) }
            let served = n == 1 << 20 && Data(buffer) == file.data[(chunk << 20)..<((chunk + 1) << 20)]
            #expect(served, "chunk \(chunk)")
            // Idle: the file lock and the map are let go of, and taken again by the next read.
            let deadline = Date().addingTimeInterval(10)
            while fetcher.snapshot.inFlightBlocks > 0 && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
            Thread.sleep(forTimeInterval: 0.2)
        }
        #expect(fetcher.snapshot.phase == .partial && fetcher.snapshot.bytesPresent == 2 << 20)
        #expect(fetcher.snapshot.fetchedHere, "the reopened map brought nothing this fetcher had not checked")
        #expect(fetcher.snapshot.digestRestarts == 0, "the whole-file digest goes on where it was")
        try cache.engine.ensure(spec)
        #expect(try cache.modelFile("m@1.0.0", "w.bin") == file.data)
    }

    /// `ensure` fetched in order (one connection) hashes the whole file as its bytes arrive:
    /// nothing is read back for the whole-file digest.
    @Test func anInOrderEnsureHashesTheWholeFileInPassing() throws {
        let model = ModelFixture(modelID: "m@1.0.0", sizes: [("w.bin", 6 << 20)], chunkSize: 1 << 20, seed: 8)
        let dir = try Scratch("wan-in-passing")
        try model.write(to: dir.path + "/src")
        var settings = CacheEngine.Settings()
        settings.connections = 1
        settings.jobSize = 2 << 20
        // A loaded machine can hold a fetch thread off the CPU for seconds; the extra worker
        // the scheduler starts for a stuck job would fetch out of order.
        settings.stallGrace = 3600
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), settings: settings, dir: dir)
        let spec = try cache.spec("m@1.0.0")
        try cache.engine.ensure(spec)
        let file = try #require(spec.files.first)
        let fetcher = try #require(cache.engine.liveFetcher(file))
        #expect(fetcher.snapshot.phase == .complete)
        #expect(fetcher.snapshot.digestReadBack == 0, "every byte was hashed in passing")
        #expect(try cache.modelFile("m@1.0.0", "w.bin") == model.files[0].data)
    }

    @Test func insufficientSpaceFailsFastAndKeepsWhatIsThere() throws {
        let dir = try Scratch("wan-nospace")
        let mountPoint = dir.path + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try TmpfsMount.mount(at: mountPoint, megabytes: 24)
        defer { TmpfsMount.unmount(mountPoint) }

        let small = ModelFixture(modelID: "small@1.0", sizes: [("w.bin", 8 << 20)], seed: 4)
        let large = ModelFixture(modelID: "large@1.0", sizes: [("w.bin", 20 << 20)], seed: 5)
        try small.write(to: dir.path + "/src")
        try large.write(to: dir.path + "/src2")
        let manifest = ModelFixture.manifest([small.manifestEntry(sources: ["local://src"]), large.manifestEntry(sources: ["local://src2"])])
        let config = try OrchestratorConfig.load(environment: ["MODELS_ROOT": mountPoint + "/root"], manifestPath: try dir.write("models.toml", manifest))
        let engine = try CacheEngine(config: config, registry: try ModelRegistry(manifestPath: config.manifestPath))
        try engine.ensure(try engine.registry.spec("small@1.0"))
        do {
            try engine.ensure(try engine.registry.spec("large@1.0"))
            Issue.record("no error")
        } catch let error as OrchestratorError {
            #expect(error.code == .noSpace)
            #expect(error.description.contains("need \(20 << 20) bytes"))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: mountPoint + "/root/wan22/small@1.0/w.bin")) == small.file("w.bin").data)
        #expect(try engine.status(try engine.registry.spec("small@1.0")).state == .complete)
    }
}

/// Collects progress callbacks.
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [(Int64, Int64)] = []
    func add(_ done: Int64, _ total: Int64) { lock.lock(); values.append((done, total)); lock.unlock() }
    var last: (Int64, Int64)? { lock.lock(); defer { lock.unlock() }; return values.last }
    var isMonotonic: Bool {
        lock.lock()
        defer { lock.unlock() }
        return zip(values, values.dropFirst()).allSatisfy { $0.0 <= $1.0 }
    }
}
