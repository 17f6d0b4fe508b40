import Foundation
import Glibc
import Synchronization
import Testing
@testable import WanCache

/// The whole-file digest threads: lower CPU priority than the threads that fetch and serve,
/// and an unmount can wait for what they are doing.
@Suite struct HashWorkersTests {
    @Test func jobsRunAtTheLowerPriorityAndIdleIsObservable() {
        let workers = HashWorkers(threads: 1, name: "wan-hash-test")
        defer { workers.stop() }
        let nice = Mutex<Int32?>(nil)
        let release = DispatchSemaphore(value: 0)
        workers.submit {
            errno = 0
            let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)   // this thread's nice value
            nice.withLock { $0 = errno == 0 ? value : nil }
            release.wait()
        }
        #expect(!workers.waitUntilIdle(timeout: 0.3), "a job is still running")
        release.signal()
        #expect(workers.waitUntilIdle(timeout: 10), "idle once the job ended")
        #expect(nice.withLock { $0 } == HashWorkers.nice, "digests yield to fetching and serving")
        #expect(getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) == 0, "the caller's own priority is untouched")
    }

    /// A deferrable digest waits while the engine fetches and runs once it has stopped for the
    /// quiet period; a digest someone waits for runs at once, even behind a deferred one; a
    /// deferred one runs anyway after the longest deferral.
    @Test func deferrableDigestsWaitWhileTheEngineFetches() throws {
        let fetching = Atomic<Bool>(true)
        let workers = HashWorkers(threads: 1, name: "wan-hash-defer", busy: { fetching.load(ordering: .relaxed) },
                                  maxDeferral: .seconds(30))
        defer { workers.stop() }
        let ran = Mutex<[String]>([])
        workers.submit(deferrable: true) { ran.withLock { $0.append("deferred") } }
        workers.submit { ran.withLock { $0.append("wanted") } }
        Thread.sleep(forTimeInterval: 0.6)
        #expect(ran.withLock { $0 } == ["wanted"], "the deferrable digest waits while the engine fetches")
        #expect(workers.shouldPause(queuedAt: .now), "a running deferrable digest pauses while the engine fetches")
        #expect(!workers.shouldPause(queuedAt: .now - .seconds(31)), "not once it has waited the longest deferral")
        fetching.store(false, ordering: .relaxed)
        #expect(workers.waitUntilIdle(timeout: 10))
        #expect(ran.withLock { $0 } == ["wanted", "deferred"], "it runs once the engine is quiet")
        #expect(!workers.shouldPause(queuedAt: .now), "the engine is quiet")

        // Fetching for good: the deferral ends.
        fetching.store(true, ordering: .relaxed)
        let impatient = HashWorkers(threads: 1, name: "wan-hash-defer2", busy: { fetching.load(ordering: .relaxed) },
                                    maxDeferral: .milliseconds(300))
        defer { impatient.stop() }
        impatient.submit(deferrable: true) { ran.withLock { $0.append("overdue") } }
        #expect(impatient.waitUntilIdle(timeout: 10))
        #expect(ran.withLock { $0.last } == "overdue")

        // Without a way to tell, nothing is deferred.
        let plain = HashWorkers(threads: 1, name: "wan-hash-plain")
        defer { plain.stop() }
        plain.submit(deferrable: true) { ran.withLock { $0.append("plain") } }
        #expect(plain.waitUntilIdle(timeout: 10))
        #expect(ran.withLock { $0.last } == "plain")
    }
}
