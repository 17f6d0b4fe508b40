import Foundation
import WanCore
import WanSystem

/// Access traces under `MODELS_ROOT/.state/traces/<model directory>.json` (see ``AccessTrace``):
/// read and written without following a symlink below MODELS_ROOT, replaced whole, and
/// merged under a lock so two mounts recording at once lose nothing.
extension CacheEngine {
    static let tracesDirectory = ".state/traces"

    private func tracesDirectory(create: Bool) throws(SystemError) -> Directory? {
        do {
            return try root.root(create: create).subdirectory(Self.tracesDirectory, create: create)
        } catch where !create && (error.errno == ENOENT || error.errno == ENOTDIR) {
            return nil
        }
    }

    /// Where `spec`'s trace lives (for messages).
    public func tracePath(_ spec: ModelSpec) -> String {
        resolver.modelsRoot + "/" + Self.tracesDirectory + "/" + modelKey(spec) + ".json"
    }

    /// `spec`'s recorded trace, restricted to the files the manifest still has with the same
    /// content; nil when none was recorded.
    /// - Throws: when the file cannot be read or is not a trace (named in the error).
    public func trace(_ spec: ModelSpec) throws -> AccessTrace? {
        guard let directory = try tracesDirectory(create: false), let bytes = try readTrace(spec, in: directory) else { return nil }
        let trace = try AccessTrace.decode(Data(bytes), source: tracePath(spec))
        _ = try trace.resolve(against: spec)   // a trace that is not one is an error, not a replay
        return trace.restricted(to: spec)
    }

    /// The trace file's bytes; one too large to be a trace is not one (replaced on the next write).
    private func readTrace(_ spec: ModelSpec, in directory: Directory) throws -> [UInt8]? {
        let result = Result { () throws(SystemError) -> [UInt8]? in try directory.readFile(modelKey(spec) + ".json", limit: AccessTrace.maxFileBytes) }
        if case .failure(let error) = result, error.errno == EFBIG {
            throw OrchestratorError.configInvalid(key: "trace", message: "\(tracePath(spec)) is larger than a trace may be (\(AccessTrace.maxFileBytes) bytes)")
        }
        return try result.get()
    }

    /// Merges `recorded` into `spec`'s trace on disk (the union, each byte at its earliest
    /// touch) and writes it. Returns the trace written. A trace on disk that does not read is
    /// replaced (it is a cache of what loads did, not data).
    @discardableResult
    public func recordTrace(_ recorded: AccessTrace, for spec: ModelSpec, replacing: Bool = false) throws -> AccessTrace {
        _ = try recorded.resolve(against: spec)   // what is written is a trace the next read accepts
        let lock = try locks.acquire("traces/" + modelKey(spec), timeout: 30)
        defer { lock.release() }
        let mine = recorded.restricted(to: spec)
        var existing: AccessTrace?
        if !replacing {
            do {
                existing = try trace(spec)
            } catch let error as OrchestratorError {
                // Not a trace (a cache of what loads did, not data): replaced. Anything else
                // (EIO, a symlink where the file should be) is an error, and nothing is lost.
                guard case .configInvalid = error else { throw error }
            }
        }
        var merged = existing.map { $0.merged(with: mine) } ?? mine
        merged.updated = Date()
        let encoded = try merged.encoded()
        guard encoded.count <= AccessTrace.maxFileBytes else {
            throw OrchestratorError.configInvalid(key: "trace", message: "the trace of \(modelKey(spec)) would be \(encoded.count) bytes (at most \(AccessTrace.maxFileBytes))")
        }
        guard let directory = try tracesDirectory(create: true) else { return merged }
        try directory.replaceFile(modelKey(spec) + ".json", with: Array(encoded))
        removeStaleTemporaries(in: directory)
        return merged
    }

    /// Temporary files of writes that never finished (a process killed between its write and
    /// its rename), an hour old or more. Best effort: they are small, and only ever ignored.
    private func removeStaleTemporaries(in directory: Directory) {
        guard let names = try? directory.entries() else { return }
        let cutoff = Date().timeIntervalSince1970 - 3600
        for name in names where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            if let info = try? directory.info(name), info.kind == .regular, info.modified < cutoff { _ = try? directory.remove(name) }
        }
    }

    /// What of `spec`'s trace is in the cache already; nil when it has none.
    public func traceSummary(_ spec: ModelSpec) -> TraceSummary? {
        guard let trace = (try? self.trace(spec)) ?? nil, let resolved = try? trace.resolve(against: spec) else { return nil }
        // What a replay would find here already.
        var outcome = TraceReplay.Outcome()
        _ = TraceReplay.plan(resolved.ranges, present: presentRanges, options: TraceReplay.Options(), outcome: &outcome)
        return TraceSummary(ranges: trace.ranges.count, bytes: trace.byteCount, bytesPresent: outcome.bytesAlreadyPresent,
                            runs: trace.runs, updated: trace.updated)
    }

    /// The bytes of `file`'s content in the cache: all of it once a blob is there, else what
    /// this process's fetch or the partial file's range map holds.
    public func presentRanges(_ file: FileSpec) -> RangeSet {
        if let live = liveFetcher(file) { return live.presentRanges }
        if blobExists(file) { return RangeSet([0..<file.size]) }
        return recordedRanges(file) ?? RangeSet()
    }
}
