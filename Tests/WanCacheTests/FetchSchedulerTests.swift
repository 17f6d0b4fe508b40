import Foundation
import Synchronization
import Testing
import WanTestSupport
@testable import WanCache

/// A stuck job (no bytes for a while) does not hold up the queue: an extra worker runs the
/// next job, and leaves again once it is not needed.
@Suite struct FetchSchedulerStallTests {
    @Test func aStuckJobDoesNotHoldUpTheNextOne() throws {
        let scheduler = FetchScheduler(workers: 1, demandWorkers: 0, name: "stall-test", stallGrace: 0.3)
        defer { scheduler.stop() }
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        scheduler.submit(.background) { _ in release.wait() }   // never reports progress
        let submitted = Date()
        scheduler.submit(.background) { _ in started.signal() }
        #expect(started.wait(timeout: .now() + 5) == .success, "the second job never ran")
        #expect(Date().timeIntervalSince(submitted) < 2)
        release.signal()
        let deadline = Date().addingTimeInterval(5)
        while scheduler.threadCount > 1 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(scheduler.threadCount == 1, "the extra worker left")
    }

    @Test func aJobThatMovesKeepsItsWorkerAndNoExtraStarts() throws {
        // A grace well above the job's pulse, so a loaded machine's late wake-ups never make
        // it look stuck.
        let scheduler = FetchScheduler(workers: 1, demandWorkers: 0, name: "move-test", stallGrace: 2)
        defer { scheduler.stop() }
        let done = DispatchSemaphore(value: 0)
        scheduler.submit(.background) { progress in
            for _ in 0..<20 {   // 1 s of steady progress
                progress.progressed(bytes: 1 << 20)
                Thread.sleep(forTimeInterval: 0.05)
            }
        }
        let second = Date()
        scheduler.submit(.background) { _ in done.signal() }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(Date().timeIntervalSince(second) >= 0.9, "ran only once the first was done: the connection limit holds")
    }

    /// An origin that trickles (a few bytes now and then) holds a worker as a frozen one does:
    /// the next job gets an extra worker.
    @Test func aTricklingJobCountsAsStuck() throws {
        let scheduler = FetchScheduler(workers: 1, demandWorkers: 0, name: "trickle-test", stallGrace: 0.3)
        defer { scheduler.stop() }
        let release = Flag()
        let started = DispatchSemaphore(value: 0)
        scheduler.submit(.background) { progress in
            while !release.isRaised {   // 10 bytes a second
                progress.progressed(bytes: 1)
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        let submitted = Date()
        scheduler.submit(.background) { _ in started.signal() }
        #expect(started.wait(timeout: .now() + 5) == .success, "the second job never ran")
        #expect(Date().timeIntervalSince(submitted) < 2)
        release.raise()
    }

    @Test func noThreadStartsBeforeTheFirstJob() throws {
        let scheduler = FetchScheduler(workers: 3, demandWorkers: 1, name: "lazy-test")
        defer { scheduler.stop() }
        #expect(scheduler.threadCount == 0, "made, never used: no thread")
        let done = DispatchSemaphore(value: 0)
        scheduler.submit(.background) { _ in done.signal() }
        #expect(done.wait(timeout: .now() + 5) == .success)
        #expect(scheduler.threadCount == 4)
    }
}

/// An engine made only to read status (the sidecar's, the CLI's) starts no fetch or hash thread.
@Suite struct LazyEngineThreadTests {
    @Test func anEngineStartsThreadsOnlyOnItsFirstFetch() throws {
        let model = ModelFixture(modelID: "lazy@1.0", sizes: [("w.bin", 1 << 20)], seed: 3)
        let dir = try Scratch("wan-lazy")
        try model.write(to: dir.path + "/src")
        let fixture = try CacheFixture(manifest: ModelFixture.manifest([model.manifestEntry(sources: ["local://\(dir.path)/src"])]), dir: dir)
        let engine = fixture.engine
        defer { engine.shutdown() }
        _ = try engine.status(try fixture.spec("lazy@1.0"))
        #expect(engine.scheduler.threadCount == 0 && !engine.hashWorkers.isStarted, "status alone starts no thread")
        _ = try engine.ensure(try fixture.spec("lazy@1.0"))
        #expect(engine.scheduler.threadCount > 0, "the first fetch starts the fetch workers")
    }
}

/// A flag one thread raises and another reads.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)
    func raise() { raised.store(true, ordering: .sequentiallyConsistent) }
    var isRaised: Bool { raised.load(ordering: .sequentiallyConsistent) }
}
