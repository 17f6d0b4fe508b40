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
///   recording is merged into `MODELS_ROOT/.state/traces/<model>.json` (by a thread of its
///   own: never on a reader's path). A load that pauses and goes on within
///   ``Settings/sessionSeconds`` is one load: its times go on from where they were;
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
        /// Seconds without a read after which the next read starts another load (which looks
        /// for a trace to replay again: one imported while mounted is used then).
        var sessionSeconds: Double = 600
    }

    private struct Recording {
        let spec: ModelSpec
        var trace: AccessTrace
        var covered: [Int: RangeSet] = [:]
        var lastRead: ContinuousClock.Instant
    }

    /// A model's load as one: when it began, when it was last read, and whether its trace
    /// was looked for (once per load: a later load looks again, a trace this load wrote
    /// meanwhile is no reason to).
    private struct Session {
        let started: ContinuousClock.Instant
        var lastRead: ContinuousClock.Instant
        var lookedForTrace = false
    }

    private struct State {
        var recordings: [String: Recording] = [:]
        var sessions: [String: Session] = [:]
        /// Recordings a write failed for: merged into the next write.
        var unwritten: [String: (spec: ModelSpec, trace: AccessTrace)] = [:]
        var stopped = false
    }

    private let engine: CacheEngine
    private let settings: Settings
    private let logger: Logger
    private let state = Mutex(State())
    /// Held through each flush: the unmount's last flush waits for one in progress.
    private let flushing = Mutex(())
    /// Ends running replays at shutdown.
    private let cancel = CancellationToken()

    init(engine: CacheEngine, settings: Settings, logger: Logger = Logger(label: "wanfs.trace")) {
        self.engine = engine
        self.settings = settings
        self.logger = logger
        guard settings.record else { return }
        let thread = Thread { [weak self] in
            ThreadName.set("wan-trace")
            while true {
                Thread.sleep(forTimeInterval: 1)
                guard let self, !self.state.withLock({ $0.stopped }) else { return }
                self.flush()
            }
        }
        thread.start()
    }

    /// A read of `range` of `file` (of model directory `key`), which was not complete: recorded,
    /// and the model's replay started if this is its first read of a weights file.
    func read(_ range: Range<Int64>, of file: FileSpec, in spec: ModelSpec, key: String) {
        let now = ContinuousClock.now
        let startReplay = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            var session = state.sessions[key].flatMap { now - $0.lastRead < .seconds(settings.sessionSeconds) ? $0 : nil }
                ?? Session(started: now, lastRead: now)
            session.lastRead = now
            let lookNow = settings.replay && file.size >= Self.replayTrigger && !session.lookedForTrace
            if lookNow { session.lookedForTrace = true }
            state.sessions[key] = session
            if settings.record { record(range, of: file, in: spec, key: key, session: session, now: now, &state) }
            return lookNow
        }
        if startReplay { replay(spec, key: key) }
    }

    private func record(_ range: Range<Int64>, of file: FileSpec, in spec: ModelSpec, key: String, session: Session,
                        now: ContinuousClock.Instant, _ state: inout State) {
        let elapsed = now - session.started
        let at = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        // Taken out and put back: changed in place, not copied (a recording may be large).
        var recording = state.recordings.removeValue(forKey: key)
            ?? Recording(spec: spec, trace: AccessTrace(model: spec.modelID, variant: spec.variant), lastRead: now)
        recording.trace.touch(AccessTrace.File(file), range, at: (at * 1000).rounded() / 1000, covered: &recording.covered)
        recording.lastRead = now
        if recording.trace.runs == 0 && session.started == now { recording.trace.runs = 1 }   // a new load
        state.recordings[key] = recording
    }

    /// Replays `spec`'s trace, if it has one, on a thread of its own (the read that started it
    /// waits for none of it: not even the trace's loading).
    private func replay(_ spec: ModelSpec, key: String) {
        var replayOptions = TraceReplay.Options()
        replayOptions.budget = settings.budget
        let options = replayOptions
        let (engine, logger, cancel) = (self.engine, self.logger, self.cancel)
        let thread = Thread { [weak self] in
            ThreadName.set("wan-replay")
            do {
                guard let trace = try engine.trace(spec), !trace.ranges.isEmpty, self != nil else { return }
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
    /// one with `all`, when the mount ends). A recording whose write fails is kept and merged
    /// into the next write. Merging and writing happen outside the lock readers take.
    func flush(all: Bool = false) {
        flushing.withLock { _ in
            let now = ContinuousClock.now
            let (due, earlier) = state.withLock { state -> ([(key: String, spec: ModelSpec, trace: AccessTrace)], [String: (spec: ModelSpec, trace: AccessTrace)]) in
                let keys = state.recordings.filter { all || now - $0.value.lastRead >= .seconds(settings.idleSeconds) }.map(\.key)
                let due = keys.compactMap { key -> (key: String, spec: ModelSpec, trace: AccessTrace)? in
                    state.recordings.removeValue(forKey: key).map { (key, $0.spec, $0.trace) }
                }
                var earlier: [String: (spec: ModelSpec, trace: AccessTrace)] = [:]
                for key in all ? Array(state.unwritten.keys) : due.map(\.key) { earlier[key] = state.unwritten.removeValue(forKey: key) }
                return (due, earlier)
            }
            var writes: [String: (spec: ModelSpec, trace: AccessTrace)] = earlier
            for entry in due { writes[entry.key] = (entry.spec, writes[entry.key].map { $0.trace.merged(with: entry.trace) } ?? entry.trace) }
            for (key, write) in writes where !write.trace.ranges.isEmpty {
                do {
                    let written = try engine.recordTrace(write.trace, for: write.spec)
                    logger.info("recorded the access trace of \(key): \(written.ranges.count) ranges, \(ByteSize.format(written.byteCount)) (\(written.runs) load(s))")
                } catch {
                    logger.warning("the access trace of \(key) could not be written\(all ? "" : " (kept for the next try)"): \(error)")
                    guard !all else { continue }
                    let pending = state.withLock { $0.unwritten.removeValue(forKey: key) }
                    let kept = pending.map { $0.trace.merged(with: write.trace) } ?? write.trace
                    state.withLock { $0.unwritten[key] = (write.spec, kept) }
                }
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
