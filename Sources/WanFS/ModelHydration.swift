import Foundation
import Logging
import Synchronization
import WanCache
import WanCore
import WanSystem

/// Model-aware hydration (`hydrate=auto`): a model load is predictable. Once a load commits to a
/// model's weights (its first open of a `.safetensors` file or of a safetensors index), every
/// small file of the model (configs, tokenizers, indexes: under ``smallFile``) and the header of
/// every `.safetensors` file are fetched in parallel, ahead of the loader, which would otherwise
/// ask for them one after the other. A call that reads only a config opens no weights and
/// fetches only what it reads.
final class ModelHydration: Sendable {
    /// Files under this size are fetched whole; larger ones are weights.
    static let smallFile: Int64 = TraceRecorder.replayTrigger
    /// What is fetched first of a safetensors file: most headers fit (8-byte length + JSON);
    /// a longer one is fetched once its length is known.
    static let headerGuess: Int64 = 1 << 20
    /// The longest header followed (the parser's own limit).
    static let maxHeader: Int64 = 100 << 20

    private let engine: CacheEngine
    private let logger: Logger
    private let started = Mutex<Set<String>>([])

    init(engine: CacheEngine, logger: Logger = Logger(label: "wanfs.hydrate")) {
        self.engine = engine
        self.logger = logger
    }

    /// Whether opening `path` means a load of the model's weights has begun.
    static func startsALoad(_ path: String) -> Bool {
        path.hasSuffix(".safetensors") || path.hasSuffix(".safetensors.index.json")
    }

    /// An open of `file` of model directory `key`: starts the model's hydration on a thread of
    /// its own (once per model and daemon) when it opens weights.
    func opened(_ file: FileSpec, of spec: ModelSpec, key: String) {
        guard Self.startsALoad(file.path), started.withLock({ $0.insert(key).inserted }) else { return }
        let (engine, logger) = (self.engine, self.logger)
        let thread = Thread {
            ThreadName.set("wan-hydrate")
            // Best effort: it only queues fetches, and must not slow the read that started it.
            try? ThreadPriority.lowerCurrent(to: HashWorkers.nice)
            Self.hydrate(spec, first: file, key: key, engine: engine, logger: logger)
        }
        thread.start()
    }

    /// Queues the fetches: the file whose open started it first, and the others once its first
    /// bytes are here (its reader is waiting for them: on a small machine, verifying other
    /// files' chunks at the same time delayed that first read by a few milliseconds).
    private static func hydrate(_ spec: ModelSpec, first opened: FileSpec, key: String, engine: CacheEngine, logger: Logger) {
        var headers: [FileFetcher] = []
        var queued: Int64 = 0
        for file in [opened] + spec.files.filter({ $0 != opened }) where file.size > 0 {
            let isWeights = file.path.hasSuffix(".safetensors")
            guard isWeights || file.size < smallFile, let fetcher = try? engine.fetcher(for: file, of: spec),
                  fetcher.snapshot.phase == .partial else { continue }
            let range: Range<Int64> = isWeights ? 0..<min(file.size, headerGuess) : 0..<file.size
            guard !fetcher.isPresent(range) else { continue }
            fetcher.prefetch(range, priority: .readahead)
            queued += Int64(range.count)
            if isWeights && file.size > headerGuess { headers.append(fetcher) }
            if file == opened {
                // Best effort: a failure here is the reader's to report.
                try? fetcher.require(0..<min(file.size, 8), priority: .readahead, timeout: 30)
            }
        }
        // A header longer than the guess: the rest of it, once its length is here.
        for fetcher in headers {
            var length = [UInt8](repeating: 0, count: 8)
            let read = length.withUnsafeMutableBytes { buffer in
                (try? fetcher.read(into: buffer, at: 0, priority: .readahead, timeout: 30)) ?? 0
            }
            guard read == 8 else { continue }
            let headerLength = length.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            guard headerLength <= UInt64(maxHeader), 8 + Int64(headerLength) <= fetcher.content.size,
                  8 + Int64(headerLength) > headerGuess else { continue }
            fetcher.prefetch(headerGuess..<8 + Int64(headerLength), priority: .readahead)
            queued += 8 + Int64(headerLength) - headerGuess
        }
        if queued > 0 { logger.info("hydrating \(key) for its load: \(ByteSize.format(queued)) of small files and safetensors headers") }
    }
}
