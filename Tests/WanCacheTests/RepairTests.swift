import Foundation
import Testing
import WanCore
import WanTestSupport
@testable import WanCache

/// The one repair the CLI (`verify --fix`) and the sidecar (`repair`) run.
@Suite struct RepairTests {
    func fixture() throws -> (CacheFixture, ModelFixture) {
        let model = ModelFixture(modelID: "fix@1.0", sizes: [("a.bin", 300_000), ("b.bin", 200_000)], seed: 61)
        let dir = try Scratch("wan-repair")
        try model.write(to: dir.path + "/src")
        let fixture = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://\(dir.path)/src"])]), dir: dir)
        _ = try fixture.engine.ensure(try fixture.spec("fix@1.0"))
        return (fixture, model)
    }

    /// Rot in a blob: flips a byte of the file the model links (the same inode as the blob).
    func rot(_ fixture: CacheFixture, _ path: String) throws {
        let full = fixture.engine.resolver.localDir(try fixture.spec("fix@1.0")) + "/" + path
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: full)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: full))
        try handle.seek(toOffset: 100)
        try handle.write(contentsOf: Data([0xEE]))
        try handle.close()
    }

    @Test func localRepairQuarantinesRelinksAndFetchesNothing() throws {
        let (fixture, model) = try fixture()
        defer { fixture.engine.shutdown() }
        let spec = try fixture.spec("fix@1.0")
        try rot(fixture, "a.bin")
        try FileManager.default.removeItem(atPath: fixture.engine.resolver.localDir(spec) + "/b.bin")   // its blob stays
        let report = try fixture.engine.repair(spec, mode: .local)
        #expect(report.actions == ["integrity_check", "quarantine", "relink"])
        #expect(report.found.failedFiles == ["a.bin"] && report.found.missingFiles == ["b.bin"])
        #expect(report.stillMissing == ["a.bin"], "the damaged file is gone, the lost link is back")
        #expect(!report.intact && report.after == nil)
        #expect(try fixture.modelFile("fix@1.0", "b.bin") == model.file("b.bin").data)
    }

    @Test func fetchingRepairEndsIntact() throws {
        let (fixture, model) = try fixture()
        defer { fixture.engine.shutdown() }
        let spec = try fixture.spec("fix@1.0")
        try rot(fixture, "a.bin")
        let report = try fixture.engine.repair(spec, mode: .fetch)
        #expect(report.actions == ["integrity_check", "quarantine", "partial_redownload"])
        #expect(report.intact && report.after?.verified == true)
        #expect(try fixture.modelFile("fix@1.0", "a.bin") == model.file("a.bin").data)
        let again = try fixture.engine.repair(spec, mode: .fetch)
        #expect(again.actions == ["integrity_check"] && again.intact && again.after == nil, "an intact model is only re-hashed")
    }
}
