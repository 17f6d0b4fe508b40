import Foundation

/// Runs blocking work (libcurl transfers, pread loops) on its own thread, so Swift
/// concurrency's small cooperative pool is never blocked by it.
public enum Blocking {
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Runs `bodies` each on its own thread, concurrently, and returns their results in order.
    public static func all<T: Sendable>(_ bodies: [@Sendable () -> T]) async -> [T] {
        await withTaskGroup(of: (Int, T).self) { group in
            for (index, body) in bodies.enumerated() {
                group.addTask { (index, try! await run(body)) }
            }
            var results = [(Int, T)]()
            for await result in group { results.append(result) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}
