import Foundation
import Synchronization
import Testing
@testable import WanSystem

@Suite struct ThreadNameTests {
    /// What a new thread reads back after naming itself, and the name the kernel shows for it.
    private func named(_ name: String) -> (current: String, comm: String) {
        let result = Mutex<(String, String)>(("", ""))
        let done = DispatchSemaphore(value: 0)
        Thread {
            ThreadName.set(name)
            let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
            result.withLock { $0 = (ThreadName.current, comm.trimmingCharacters(in: .newlines)) }
            done.signal()
        }.start()
        done.wait()
        return result.withLock { (current: $0.0, comm: $0.1) }
    }

    @Test func aThreadNamesItselfForTheKernel() {
        let (current, comm) = named("wan-fetch-x12")
        #expect(current == "wan-fetch-x12")
        #expect(comm == "wan-fetch-x12")
    }

    @Test func aLongNameIsCutToFifteenBytes() {
        #expect(named("a-name-of-twenty-chars").current == "a-name-of-twent")
    }
}
