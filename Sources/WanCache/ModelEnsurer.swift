import Foundation
import WanCore
import WanSources
import WanSystem

/// Seed 000's `ModelEnsurer`, Swift-shaped: model ids (with optional variant) in, paths,
/// statuses and verification results out. A thin layer over ``CacheEngine`` that resolves
/// ids through the registry and runs batches with a concurrency limit.
public struct ModelEnsurer: Sendable {
    public let engine: CacheEngine
    public var registry: ModelRegistry { engine.registry }

    public init(engine: CacheEngine) {
        self.engine = engine
    }

    /// From the environment (MODELS_ROOT, WAN_MODELS_MANIFEST, ...) and an optional config file.
    public static func fromConfig(configPath: String? = nil) throws -> ModelEnsurer {
        ModelEnsurer(engine: try CacheEngine.fromConfig(configPath: configPath))
    }

    /// Makes the model complete and verified on disk; returns its directory.
    @discardableResult
    public func ensure(_ modelID: String, variant: String? = nil, force: Bool = false, cancel: CancellationToken = .none,
                       progress: (@Sendable (Int64, Int64) -> Void)? = nil) throws -> String {
        try engine.ensure(registry.spec(modelID, variant: variant), force: force, cancel: cancel, progress: progress)
    }

    /// The model's state, without downloading anything.
    public func status(_ modelID: String, variant: String? = nil) throws -> ModelStatus {
        try engine.status(registry.spec(modelID, variant: variant))
    }

    /// Re-hashes every file (`verify_integrity`).
    public func verifyIntegrity(_ modelID: String, variant: String? = nil) throws -> VerificationResult {
        try engine.verify(registry.spec(modelID, variant: variant))
    }

    /// Bytes still to download, after deduplication with what is cached.
    public func estimateDownloadSize(_ modelID: String, variant: String? = nil) throws -> Int64 {
        try engine.estimateDownloadSize(registry.spec(modelID, variant: variant))
    }

    /// The outcome of one model of a batch.
    public struct BatchResult<Value: Sendable>: Sendable {
        public let modelID: String
        public let result: Result<Value, any Error>
    }

    /// Ensures several models, at most `maxConcurrent` at a time (default `max_concurrent_downloads`).
    public func ensureBatch(_ modelIDs: [String], variant: String? = nil, maxConcurrent: Int? = nil,
                            progress: (@Sendable (String, Int64, Int64) -> Void)? = nil) async -> [BatchResult<String>] {
        await batch(modelIDs, maxConcurrent: maxConcurrent) { id in
            try ensure(id, variant: variant) { done, total in progress?(id, done, total) }
        }
    }

    /// Verifies several models, at most `maxConcurrent` at a time.
    public func verifyBatch(_ modelIDs: [String], variant: String? = nil, maxConcurrent: Int? = nil) async -> [BatchResult<VerificationResult>] {
        await batch(modelIDs, maxConcurrent: maxConcurrent) { id in try verifyIntegrity(id, variant: variant) }
    }

    private func batch<Value: Sendable>(_ ids: [String], maxConcurrent: Int?,
                                        _ work: @escaping @Sendable (String) throws -> Value) async -> [BatchResult<Value>] {
        let limit = max(1, maxConcurrent ?? engine.config.maxConcurrentDownloads)
        return await withTaskGroup(of: (Int, BatchResult<Value>).self) { group in
            var results: [(Int, BatchResult<Value>)] = []
            for (index, id) in ids.enumerated() {
                if index >= limit, let finished = await group.next() { results.append(finished) }
                group.addTask {
                    let outcome: Result<Value, any Error>
                    do { outcome = .success(try await Blocking.run { try work(id) }) } catch { outcome = .failure(error) }
                    return (index, BatchResult(modelID: id, result: outcome))
                }
            }
            for await finished in group { results.append(finished) }
            return results.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}
