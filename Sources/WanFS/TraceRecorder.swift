import Foundation
import Logging
import Synchronization
import WanCache
import WanCore
import WanSources
import WanSystem

/// The mount's side of access traces (``AccessTrace``):
/// - *recording*: every read of a file still being fetched adds its range, in first-touch
///   order, to its model's recording; once the model has been idle a few seconds the
///   recording is merged into `MODELS_ROOT/.state/traces/<model>.json`;
/// - *replay*: the first read of a large file of a model that has a trace starts fetching
///   the trace's ranges in its order, below readers' priority, so the loader finds its
///   bytes already there. A call that reads only configs and tokenizers (small files)
///   starts no replay: it fetches only what it reads.
final class TraceRecorder: Sendable {
    /// Files at least this large start a replay when first read (weights, not configs).
    static let replayTrigger: Int64 = 16 << 20

    struct Settings: Sendable {
        var record = true
        var replay = true
        /// The most bytes one replay fetches; nil for the whole trace.
        var budget: Int64?
        /// Seconds without a read after which a model's recording is written.
        var idleSeconds: Double = 3
    }

    private struct Recording {
        let spec: ModelSpec
        var trace: AccessTrace
        var covered: [Int: RangeSet] = [:]
        let started: ContinuousClock.Instant
        var lastRead: ContinuousClock.Instant
    }

    private struct State {
        var recordings: [String: Recording] = [:]
        /// Models whose replay was started (once per model and daemon).
        var replayed: Set<String> = []
        var stopped = false
    }

    private let engine: CacheEngine
    private let settings: Settings
    private let logger: Logger
    private let state = Mutex(State())
    /// Ends running replays at shutdown.
    private let cancel = CancellationToken()

    init(engine: CacheEngine, settings: Settings, logger: Logger = Logger(label: "wanfs.trace")) {
        self.engine = engine
        self.settings = settings
        self.logger = logger
    }

    /// A read of `range` of `file` (of model directory `key`), which was not complete.
    func read(_ range: Range<Int64>, of file: FileSpec, in spec: ModelSpec, key: String) {
        let now = ContinuousClock.now
        let startReplay = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            if settings.record {
                var recording = state.recordings[key] ?? Recording(spec: spec, trace: AccessTrace(model: spec.modelID, variant: spec.variant),
                                                                   started: now, lastRead: now)
                let elapsed = now - recording.started
                let at = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                recording.trace.touch(AccessTrace.File(file), range, at: (at * 1000).rounded() / 1000, covered: &recording.covered)
                recording.lastRead = now
                state.recordings[key] = recording
            }
            guard settings.replay, file.size >= Self.replayTrigger else { return false }
            return state.replayed.insert(key).inserted
        }
        if startReplay { replay(spec, key: key) }
    }

    /// Replays `spec`'s trace, if it has one, on a thread of its own (the read that started it
    /// waits for none of it: not even the trace's loading).
    private func replay(_ spec: ModelSpec, key: String) {
        var replayOptions = TraceReplay.Options()
        replayOptions.budget = settings.budget
        let options = replayOptions
        let (engine, logger, cancel) = (self.engine, self.logger, self.cancel)
        let thread = Thread {
            ThreadName.set("wan-replay")
            do {
                guard let trace = try engine.trace(spec), !trace.ranges.isEmpty else { return }
                logger.info("replaying the access trace of \(key): \(trace.ranges.count) ranges, \(ByteSize.format(trace.byteCount))")
                let outcome = try TraceReplay.run(trace, for: spec, engine: engine, options: options, cancel: cancel)
                logger.info("replayed the access trace of \(key): \(ByteSize.format(outcome.bytesFetched)) fetched of \(ByteSize.format(outcome.bytesInTrace)) in \(outcome.ranges) ranges (\(ByteSize.format(outcome.bytesAlreadyPresent)) were here) in \(String(format: "%.2f", outcome.seconds)) s\(outcome.budgetReached ? ", budget reached" : "")\(outcome.failures.first.map { "; failed: " + $0 } ?? "")")
            } catch {
                logger.warning("the access trace of \(key) is not replayed: \(error)")
            }
        }
        thread.start()
    }

    /// Writes the recordings of models without a read for ``Settings/idleSeconds`` (every
    /// `all` when the mount ends).
    func flush(all: Bool = false) {
        let now = ContinuousClock.now
        let idle = state.withLock { state -> [Recording] in
            let keys = state.recordings.filter { all || now - $0.value.lastRead >= .seconds(settings.idleSeconds) }.map(\.key)
            return keys.compactMap { state.recordings.removeValue(forKey: $0) }
        }
        for recording in idle where !recording.trace.ranges.isEmpty {
            var trace = recording.trace
            trace.runs = 1
            do {
                let written = try engine.recordTrace(trace, for: recording.spec)
                logger.info("recorded the access trace of \(engine.modelKey(recording.spec)): \(written.ranges.count) ranges, \(ByteSize.format(written.byteCount)) (\(written.runs) load(s))")
            } catch {
                logger.warning("the access trace of \(engine.modelKey(recording.spec)) could not be written: \(error)")
            }
        }
    }

    /// Writes every recording and ends running replays (unmount).
    func stop() {
        state.withLock { $0.stopped = true }
        cancel.cancel()
        flush(all: true)
    }
}
