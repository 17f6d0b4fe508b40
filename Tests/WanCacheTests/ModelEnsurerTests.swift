import Foundation
import Testing
import WanCore
import WanTestSupport
@testable import WanCache

/// Seed 000's ModelEnsurer API: ids in, paths and results out, batches with a limit.
@Suite struct ModelEnsurerTests {
    @Test func batchesEnsureAndVerifySeveralModelsAndReportEachOutcome() async throws {
        let dir = try Scratch("wan-batch")
        let a = ModelFixture(modelID: "a@1.0", sizes: [("w.bin", 2 << 20)], seed: 1)
        let b = ModelFixture(modelID: "b@1.0", sizes: [("w.bin", 3 << 20)], seed: 2)
        try a.write(to: dir.path + "/src/a")
        try b.write(to: dir.path + "/src/b")
        let cache = try CacheFixture(manifest: ModelFixture.manifest([
            a.manifestEntry(sources: ["local://src/a"]), b.manifestEntry(sources: ["local://src/b"]),
        ]), dir: dir)
        let ensurer = ModelEnsurer(engine: cache.engine)
        #expect(try ensurer.estimateDownloadSize("b@1.0") == 3 << 20)
        #expect(try ensurer.status("a@1.0").state == .notPresent)

        let progress = ProgressLog()
        let results = await ensurer.ensureBatch(["a@1.0", "b@1.0", "missing@1.0"], maxConcurrent: 2) { _, done, total in
            progress.add(done, total)
        }
        #expect(results.map(\.modelID) == ["a@1.0", "b@1.0", "missing@1.0"])
        #expect(try results[0].result.get() == cache.root + "/wan22/a@1.0")
        #expect(try results[1].result.get() == cache.root + "/wan22/b@1.0")
        #expect(throws: OrchestratorError.self) { try results[2].result.get() }
        #expect(progress.last != nil)

        let verified = await ensurer.verifyBatch(["a@1.0", "b@1.0"])
        #expect(verified.allSatisfy { (try? $0.result.get().verified) == true })
        #expect(try ensurer.status("b@1.0").state == .complete)
        #expect(try ensurer.status("b@1.0").lastVerified != nil)
    }

    @Test func verifyFindsBitRotAndQuarantineLetsEnsureRepairIt() throws {
        let dir = try Scratch("wan-rot")
        let model = ModelFixture(modelID: "rot@1.0", sizes: [("w.bin", 1 << 20), ("c.json", 100)], seed: 3)
        try model.write(to: dir.path + "/src")
        let cache = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://src"])]), dir: dir)
        let ensurer = ModelEnsurer(engine: cache.engine)
        try ensurer.ensure("rot@1.0")
        // Flip a byte of the blob behind the model's file, as bit rot would.
        let blob = cache.engine.resolver.blobPath(sha256: model.file("w.bin").sha256)
        chmod(blob, 0o644)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: blob))
        try handle.seek(toOffset: 1000)
        try handle.write(contentsOf: Data([0xFF]))
        try handle.close()

        let result = try ensurer.verifyIntegrity("rot@1.0")
        #expect(!result.verified)
        #expect(result.failedFiles == ["w.bin"] && result.verifiedFiles == ["c.json"])
        #expect(try ensurer.status("rot@1.0").state == .corrupt)

        try cache.engine.quarantine(try cache.spec("rot@1.0"), files: result.failedFiles)
        try ensurer.ensure("rot@1.0")
        #expect(try ensurer.verifyIntegrity("rot@1.0").verified)
        #expect(try cache.modelFile("rot@1.0", "w.bin") == model.file("w.bin").data)
        #expect(try ensurer.status("rot@1.0").state == .complete)
    }
}
