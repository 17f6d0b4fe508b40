import Foundation
import Synchronization
import Testing
import WanCore
import WanTestSupport
@testable import WanCache
@testable import WanSystem

@Suite struct GCTests {
    /// Four 1 MiB models, a shared 512 KiB file in a and b, ensured from a local source.
    func fourModels() throws -> CacheFixture {
        let dir = try Scratch("wan-gc")
        var entries: [String] = []
        let shared = ModelFixture(modelID: "shared@0", sizes: [("shared.bin", 512 << 10)], seed: 100).files[0]
        for (i, name) in ["a", "b", "c", "d"].enumerated() {
            let model = ModelFixture(modelID: "\(name)@1.0", sizes: [("w.bin", 1 << 20)], seed: UInt64(i + 1))
            try model.write(to: dir.path + "/src/\(name)")
            var entry = model.manifestEntry(sources: ["local://src/\(name)"])
            if name == "a" || name == "b" {
                try dir.write("src/\(name)/shared.bin", shared.data)
                entry = entry.replacingOccurrences(of: "[models.\"\(name)@1.0\".sources]", with: """
                    [[models."\(name)@1.0".files]]
                    path = "shared.bin"
                    size = \(shared.size)
                    sha256 = "\(shared.sha256)"

                    [models."\(name)@1.0".sources]
                    """)
            }
            entries.append(entry)
        }
        let cache = try CacheFixture(manifest: ModelFixture.manifest(entries), dir: dir)
        for name in ["a", "b", "c", "d"] { try cache.engine.ensure(try cache.spec("\(name)@1.0")) }
        return cache
    }

    func exists(_ cache: CacheFixture, _ model: String) -> Bool {
        FileManager.default.fileExists(atPath: cache.root + "/wan22/" + model)
    }

    @Test func dryRunRemovesNothingAndTheRealRunReclaimsWhatItReported() throws {
        let cache = try fourModels()
        let state = try #require(try cache.engine.state())
        let now = Date()
        for (i, name) in ["a@1.0", "b@1.0", "c@1.0", "d@1.0"].enumerated() {
            try state.setLastAccess(now.addingTimeInterval(Double(i) * 100 - 10_000), model: name)
        }
        let collector = GarbageCollector(engine: cache.engine, maxTotalSize: 3 << 20)
        func cached() throws -> Int64 {
            let usage = try DiskUsage.measure(cache.engine.resolver)
            return usage.models.reduce(0) { $0 + $1.bytes - $1.sharedBytes / 2 } + usage.unlinkedBlobBytes
        }
        let before = try cached()
        let dry = try collector.collect(dryRun: true)
        #expect(dry.modelsRemoved == ["a@1.0", "b@1.0"], "least recently used first until under 3 MiB: \(dry)")
        #expect(dry.bytesReclaimed == 0)
        #expect(["a@1.0", "b@1.0", "c@1.0", "d@1.0"].allSatisfy { exists(cache, $0) })
        #expect(try cached() == before)

        let real = try collector.collect()
        #expect(real.modelsRemoved == dry.modelsRemoved)
        #expect(real.bytesReclaimed == dry.bytesReclaimable)
        #expect(!exists(cache, "a@1.0") && !exists(cache, "b@1.0") && exists(cache, "c@1.0") && exists(cache, "d@1.0"))
        let after = try cached()
        #expect(before - after >= real.bytesReclaimed - 64 << 10, "freed \(before - after), reported \(real.bytesReclaimed)")
        #expect(after <= 3 << 20 + 256 << 10)
    }

    @Test func unlinkedBlobsGoFirstAndDoNotCostAModel() throws {
        let cache = try fourModels()
        // A blob no model links (say, left by a model removed by hand): 2 MiB of garbage.
        let orphan = ModelFixture(modelID: "orphan@0", sizes: [("o.bin", 2 << 20)], seed: 200).files[0]
        let blob = cache.engine.resolver.blobPath(sha256: orphan.sha256)
        try FileManager.default.createDirectory(atPath: (blob as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try orphan.data.write(to: URL(fileURLWithPath: blob))
        // The models alone (4.5 MiB) fit in 5 MiB once the orphan is gone: nothing else goes.
        let result = try GarbageCollector(engine: cache.engine, maxTotalSize: 5 << 20).collect()
        #expect(result.modelsRemoved.isEmpty, "\(result)")
        #expect(!FileManager.default.fileExists(atPath: blob))
        #expect(result.bytesReclaimed >= 2 << 20)
    }

    @Test func pinnedAndInUseModelsAreNeverCollected() throws {
        let cache = try fourModels()
        let state = try #require(try cache.engine.state())
        for name in ["a@1.0", "b@1.0", "c@1.0"] { try state.setLastAccess(Date(timeIntervalSince1970: 1_000), model: name) }
        try GarbageCollector(engine: cache.engine).pin("a@1.0")
        // b is in use: someone holds its model lock shared (as the mount and ensure do).
        let inUse = try cache.engine.locks.acquire(LockManager.modelLockName("b@1.0"), mode: .shared, timeout: 1)
        defer { inUse.release() }

        let result = try GarbageCollector(engine: cache.engine, maxTotalSize: 0, maxModelAge: 86400).collect(aggressive: true)
        #expect(result.modelsRemoved.sorted() == ["c@1.0", "d@1.0"])
        #expect(result.reasons["a@1.0"] == "pinned")
        #expect(result.reasons["b@1.0"] == "in use")
        #expect(exists(cache, "a@1.0") && exists(cache, "b@1.0"))
        #expect(try cache.modelFile("a@1.0", "shared.bin").count == 512 << 10)
    }

    @Test func maxAgeRemovesOnlyIdleModelsAndKeepsSharedBlobs() throws {
        let cache = try fourModels()
        let state = try #require(try cache.engine.state())
        let now = Date()
        try state.setLastAccess(now.addingTimeInterval(-40 * 86400), model: "a@1.0")
        try state.setLastAccess(now, model: "b@1.0")
        try state.setLastAccess(now.addingTimeInterval(-31 * 86400), model: "c@1.0")
        try state.setLastAccess(now.addingTimeInterval(-2 * 86400), model: "d@1.0")
        let result = try GarbageCollector(engine: cache.engine, maxModelAge: 30 * 86400).collect(now: now)
        #expect(result.modelsRemoved.sorted() == ["a@1.0", "c@1.0"])
        // a's shared file is still linked by b: its blob stays, a's own weights go.
        let blobs = try DiskUsage.regularFiles(under: cache.engine.resolver.blobsDir).count
        #expect(blobs == 3, "b's weights, d's weights and the shared file remain")
        #expect(try cache.engine.status(try cache.spec("b@1.0")).state == .complete)
        #expect(try cache.engine.status(try cache.spec("a@1.0")).state != .complete)
    }

    /// The schedule the mount and the sidecar share: off while the policy says so, due a
    /// period after the last run or as soon as the cache reaches the threshold, collects down
    /// to the threshold, counts what it did, and reads the policy anew for each decision.
    @Test func theScheduleRunsWhenDueAndCollectsDownToTheThreshold() throws {
        let cache = try fourModels()   // 4.5 MiB of models
        let state = try #require(try cache.engine.state())
        let now = Date()
        for (i, name) in ["a@1.0", "b@1.0", "c@1.0", "d@1.0"].enumerated() {
            try state.setLastAccess(now.addingTimeInterval(Double(i) * 100 - 10_000), model: name)
        }
        let policy = Mutex<GCSchedule.Policy?>(nil)
        let schedule = GCSchedule(engine: cache.engine, startedAt: now) { policy.withLock { $0 } }
        #expect(!schedule.isDue(now: now.addingTimeInterval(1e6)), "collection off: never due")
        #expect(try schedule.run() == nil && schedule.snapshot.runs == 0)

        // 8 MiB allowed, collection from 75 % (6 MiB): under it, and the period has not passed.
        policy.withLock { $0 = GCSchedule.Policy(limit: 8 << 20, thresholdPercent: 75, period: 3600) }
        #expect(!schedule.isDue(now: now.addingTimeInterval(10)))
        #expect(schedule.isDue(now: now.addingTimeInterval(3600)), "a period after the start")
        // 4 MiB allowed, from 75 % (3 MiB): over it now, so due at once, and collected down to 3 MiB.
        policy.withLock { $0 = GCSchedule.Policy(limit: 4 << 20, thresholdPercent: 75, period: 3600) }
        #expect(schedule.isDue(now: now.addingTimeInterval(10)))
        let result = try #require(try schedule.runIfDue(now: now.addingTimeInterval(10)))
        #expect(result.modelsRemoved == ["a@1.0", "b@1.0"], "least recently used first, down to the threshold: \(result)")
        #expect(!exists(cache, "a@1.0") && !exists(cache, "b@1.0") && exists(cache, "c@1.0") && exists(cache, "d@1.0"))
        let record = schedule.snapshot
        #expect(record.runs == 1 && record.bytesReclaimed == result.bytesReclaimed && record.bytesReclaimed >= 2 << 20)
        #expect(record.lastRun > now)
        #expect(!schedule.isDue(), "under the threshold again, and it just ran")
        #expect(try schedule.runIfDue() == nil && schedule.snapshot.runs == 1)

        // A limit pins keep it over: one run, then no run at every look until the cache grows.
        try state.setPinned(true, model: "c@1.0")
        try state.setPinned(true, model: "d@1.0")
        policy.withLock { $0 = GCSchedule.Policy(limit: 1 << 20, thresholdPercent: 100, period: 3600) }
        #expect(schedule.isDue())
        _ = try schedule.runIfDue()
        #expect(schedule.snapshot.runs == 2 && schedule.snapshot.leftOver != nil, "it could not get under 1 MiB")
        #expect(!schedule.isDue(), "still over the limit, but nothing changed since the run that could not help")
        #expect(exists(cache, "c@1.0") && exists(cache, "d@1.0"), "pins kept")
    }
}

@Suite struct LockTests {
    @Test func aHeldLockTimesOutWithItsCode() throws {
        let dir = try Scratch("wan-locks")
        let locks = LockManager(directory: dir.path)
        let held = try locks.acquireModelLock("m@1.0", timeout: 1)
        #expect(locks.isModelLocked("m@1.0"))
        let started = Date()
        do {
            _ = try locks.acquireModelLock("m@1.0", timeout: 0.3)
            Issue.record("acquired a held lock")
        } catch let error as OrchestratorError {
            #expect(error.code == .lockTimeout)
            #expect(error.description.contains("m@1.0"))
        }
        #expect(Date().timeIntervalSince(started) >= 0.29)
        held.release()
        #expect(!locks.isModelLocked("m@1.0"))
        #expect(throws: Never.self) { try locks.acquireModelLock("m@1.0", timeout: 0.1).release() }
    }

    @Test func sharedHoldersCoexistButBlockExclusive() throws {
        let dir = try Scratch("wan-locks")
        let locks = LockManager(directory: dir.path)
        let a = try locks.acquire("m", mode: .shared, timeout: 1)
        let b = try locks.acquire("m", mode: .shared, timeout: 1)
        #expect(try locks.tryAcquire("m", mode: .exclusive) == nil)
        a.release()
        b.release()
        #expect(try locks.tryAcquire("m", mode: .exclusive) != nil)
    }

    @Test func aDeadOwnersLockIsFree() throws {
        let dir = try Scratch("wan-locks")
        let locks = LockManager(directory: dir.path)
        let path = dir.path + "/m@1.0.lock"
        // Another process takes the lock, then dies by SIGKILL.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        holder.arguments = ["python3", "-c", "import fcntl, time; f = open('\(path)', 'w'); fcntl.flock(f, fcntl.LOCK_EX); time.sleep(60)"]
        try holder.run()
        var waited = 0.0
        while !locks.isModelLocked("m@1.0") && waited < 5 { Thread.sleep(forTimeInterval: 0.05); waited += 0.05 }
        #expect(locks.isModelLocked("m@1.0"), "the other process holds it")
        kill(holder.processIdentifier, SIGKILL)
        holder.waitUntilExit()
        waited = 0
        while locks.isModelLocked("m@1.0") && waited < 5 { Thread.sleep(forTimeInterval: 0.05); waited += 0.05 }
        #expect(!locks.isModelLocked("m@1.0"))
        #expect(throws: Never.self) { try locks.acquireModelLock("m@1.0", timeout: 1).release() }
    }
}
