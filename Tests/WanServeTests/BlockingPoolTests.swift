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
        try await SidecarFixture(blockingThreads: 1).test { client, catalog in
            for path in ["/api/v1/models/status/detailed", "/health/models", "/metrics", "/api/v1/models/storage", "/api/v1/models/analytics"] {
                let occupant = try await PoolOccupant(catalog.blocking)
                let released = Flag()
                // Frees the pool in 300 ms, while the request below waits.
                let releaser = Task.detached {
                    try await Task.sleep(for: .milliseconds(300))
                    released.raise()
                    occupant.release()
                }
                let status = try await client.execute(uri: path, method: .get) { response in
                    let afterRelease = released.isRaised
                    #expect(afterRelease, "\(path) answered while the pool was busy: its work ran elsewhere")
                    return response.status
                }
                #expect(status == .ok, "\(path)")
                try await releaser.value
                try await occupant.finished()
            }
        }
    }

    /// `GET /health/models` answers from the status board the availability watcher keeps: at
    /// once, even with the pool busy (without the board it measures on the pool, as above).
    @Test func theProbeAnswersFromTheBoardWhileThePoolIsBusy() async throws {
        try await SidecarFixture(blockingThreads: 1).test { client, catalog in
            let occupant = try await PoolOccupant(catalog.blocking)
            let specs = try catalog.specs()
            // Fresh for the whole test, however long CI's other suites keep this task from running.
            catalog.board.publish(.init(taken: .now + .seconds(900), takenAt: Date(), models: specs.map { (spec: $0, status: try? catalog.engine.status($0)) },
                                        databaseReadable: true))
            let body = try await client.execute(uri: "/health/models", method: .get) { response in
                let poolStillBusy = !occupant.hasEnded
                #expect(poolStillBusy, "answered from the board, not after the pool came free")
                #expect(response.status == .ok)
                return String(buffer: response.body)
            }
            #expect(body.contains("\"app@1.0\"") && body.contains("NOT_PRESENT"), "\(body)")
            occupant.release()
            try await occupant.finished()
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

/// Takes a pool's only thread until ``release()`` (or 15 minutes, so a test that goes wrong
/// fails instead of hanging; shorter would let go while a starved test task has not yet sent its
/// request: CI's parallel suites can hold Swift concurrency's threads for minutes).
final class PoolOccupant: Sendable {
    private let gate = DispatchSemaphore(value: 0)
    private let ended = Flag()
    private let done = DispatchSemaphore(value: 0)

    /// Submitted straight to the pool (no task: Swift concurrency's threads may all be busy with
    /// other suites), then waited for without holding one of them.
    init(_ pool: NIOThreadPool) async throws {
        let taken = DispatchSemaphore(value: 0)
        let (gate, ended, done) = (gate, ended, done)
        pool.submit { _ in
            taken.signal()
            _ = gate.wait(timeout: .now() + 900)
            ended.raise()
            done.signal()
        }
        try await Self.wait(for: taken)
    }

    var hasEnded: Bool { ended.isRaised }
    func release() { gate.signal() }
    func finished() async throws { try await Self.wait(for: done) }

    private static func wait(for semaphore: DispatchSemaphore) async throws {
        let deadline = ContinuousClock.now + .seconds(900)
        while semaphore.wait(timeout: .now()) != .success {
            guard ContinuousClock.now < deadline else { throw CancellationError() }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
