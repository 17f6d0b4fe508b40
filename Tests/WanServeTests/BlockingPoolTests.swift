import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOPosix
import Synchronization
import Testing
import WanCore
import WanTestSupport
@testable import WanServe

/// Handlers never block Swift concurrency's threads: what reads the cache, the disk or the
/// state database runs on the sidecar's bounded pool (`sidecar_blocking_threads`).
@Suite struct BlockingPoolTests {
    /// With the pool's only thread taken, the handlers wait for it: had they run their work
    /// where they were called, they would answer at once.
    @Test func handlersWaitForThePoolWhenItIsBusy() async throws {
        try await SidecarFixture(blockingThreads: 1).test { client, pool in
            for path in ["/api/v1/models/status/detailed", "/health/models", "/metrics", "/api/v1/models/storage", "/api/v1/models/analytics"] {
                let gate = DispatchSemaphore(value: 0)
                let taken = DispatchSemaphore(value: 0)
                let released = Flag()
                let occupant = Task { try await pool.runIfActive { taken.signal(); gate.wait() } }
                #expect(await Task.detached { taken.wait(timeout: .now() + 10) }.value == .success, "the pool's thread is taken")
                // Frees the pool in 300 ms, while the request below waits.
                let releaser = Task.detached {
                    try await Task.sleep(for: .milliseconds(300))
                    released.raise()
                    gate.signal()
                }
                let status = try await client.execute(uri: path, method: .get) { response in
                    let afterRelease = released.isRaised
                    #expect(afterRelease, "\(path) answered while the pool was busy: its work ran elsewhere")
                    return response.status
                }
                #expect(status == .ok, "\(path)")
                try await releaser.value
                try await occupant.value
            }
        }
    }

    @Test func thePoolSizeComesFromTheConfigAndIsBounded() throws {
        let dir = try Scratch("wan-serve-pool")
        let good = try dir.write("good.toml", "sidecar_blocking_threads = 3\n")
        #expect(try OrchestratorConfig.load(environment: [:], configPath: good).sidecarBlockingThreads == 3)
        #expect(try OrchestratorConfig.load(environment: [:]).sidecarBlockingThreads == 16, "the default")
        for bad in ["0", "257", "\"many\""] {
            let file = try dir.write("bad.toml", "sidecar_blocking_threads = \(bad)\n")
            #expect(throws: OrchestratorError.self, "\(bad)") { try OrchestratorConfig.load(environment: [:], configPath: file) }
        }
    }
}

/// A flag one task raises and another reads.
final class Flag: Sendable {
    private let raised = Atomic<Bool>(false)
    func raise() { raised.store(true, ordering: .sequentiallyConsistent) }
    var isRaised: Bool { raised.load(ordering: .sequentiallyConsistent) }
}
