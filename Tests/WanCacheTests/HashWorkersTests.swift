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
}
