import Foundation
import Glibc
import Synchronization
import Testing
@testable import WanSystem

/// Tests run in parallel in one process: a test that disarms its faults must not disarm
/// another's (CI once saw an ENOSPC test's download succeed after a neighbour's reset).
@Suite struct FaultInjectionTests {
    /// Runs `body` on a thread named `name` (set from inside: Linux ignores a name given before start).
    private func onThread<T: Sendable>(named name: String, _ body: @escaping @Sendable () -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            ThreadName.set(name)
            let value = body()
            result.withLock { $0 = value }
            done.signal()
        }
        thread.start()
        done.wait()
        return result.withLock { $0! }
    }

    @Test func aResetDisarmsOnlyItsOwnThreadsFaults() {
        let mine = "fi" + UUID().uuidString.prefix(6), theirs = "fi" + UUID().uuidString.prefix(6)
        FaultInjection.force("pwrite", errno: ENOSPC, count: 10, onThreadsNamed: mine)
        FaultInjection.force("fsync", errno: EIO, count: 10, onThreadsNamed: theirs)
        defer { FaultInjection.reset(onThreadsNamed: mine) }
        FaultInjection.reset(onThreadsNamed: theirs)   // the neighbour test ends

        #expect(onThread(named: mine + "-1") { FaultInjection.take("pwrite") } == ENOSPC)
        #expect(onThread(named: theirs + "-1") { FaultInjection.take("fsync") } == nil)
        #expect(onThread(named: "other") { FaultInjection.take("pwrite") } == nil, "another thread's pwrite is left alone")
    }

    @Test func twoTestsCanForceTheSameOperation() {
        let first = "fi" + UUID().uuidString.prefix(6), second = "fi" + UUID().uuidString.prefix(6)
        FaultInjection.force("pread", errno: EIO, count: 1, onThreadsNamed: first)
        FaultInjection.force("pread", errno: ENOSPC, count: 2, onThreadsNamed: second)
        defer { FaultInjection.reset(onThreadsNamed: first); FaultInjection.reset(onThreadsNamed: second) }
        #expect(onThread(named: second) { FaultInjection.take("pread") } == ENOSPC)
        #expect(onThread(named: first) { FaultInjection.take("pread") } == EIO)
        #expect(onThread(named: first) { FaultInjection.take("pread") } == nil, "the count is kept per test")
        #expect(onThread(named: second) { FaultInjection.take("pread") } == ENOSPC)
    }
}
