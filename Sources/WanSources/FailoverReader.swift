import WanCore

/// Reads a file from its sources: spread over the healthy ones in proportion to how fast each
/// delivers when the file has chunk digests (striping; else, or when `striping` is off, in
/// manifest priority order), and from the next one when one fails.
///
/// A source that fails (after its own retries), whose bytes fail `verify`, or that runs far
/// past its usual time for a read (hedging, see ``SourceRates``) hands over to the next one.
/// Sources in cool-down (see ``SourceHealth``) are tried last rather than first. When every
/// source has failed, the error names each one and why.
public struct FailoverReader: Sendable {
    public let backends: [any StorageBackend]
    public let health: SourceHealth
    public let rates: SourceRates
    /// Spread reads over the healthy sources by their measured rates (`stripe_sources`).
    public let striping: Bool

    public init(backends: [any StorageBackend], health: SourceHealth = .shared, rates: SourceRates = .shared, striping: Bool = true) {
        self.backends = backends
        self.health = health
        self.rates = rates
        self.striping = striping
    }

    /// Bytes per second one range request is measured to get now from the sources a read
    /// would use: the mean of the healthy ones when reads are striped (the parallel requests
    /// are spread over them), else the first healthy one's in priority order. Nil while one of
    /// them is not measured yet.
    public func measuredRate(striped: Bool) -> Double? {
        let healthy = backends.filter { !health.isCoolingDown($0.displayName) }
        let used = striped ? healthy : Array(healthy.prefix(1))
        guard !used.isEmpty else { return nil }
        var total = 0.0
        for backend in used {
            guard let rate = rates.rate(backend.displayName), rate.isFinite, rate > 0 else { return nil }
            total += rate
        }
        return total / Double(used.count)
    }

    /// The backends in the order a read is tried now, in priority order (for `stat`).
    public var order: [any StorageBackend] { order(forBytes: 0, striped: false) }

    /// Whether reads of `file` are striped: only with chunk digests, which tell which source
    /// sent a bad chunk. Without them only the whole-file hash can catch bad bytes, and a file
    /// made of several sources' bytes could not say which one to blame.
    public func stripes(_ file: FileSpec) -> Bool { striping && file.chunks != nil }

    /// The backends in the order a read of `bytes` tries them now: striped, the healthy ones in
    /// fair shares by measured rate (see ``SourceRates/ranked(_:bytes:)``); else in priority
    /// order; those cooling down last.
    public func order(forBytes bytes: Int64, striped: Bool, excluding excluded: Set<String> = []) -> [any StorageBackend] {
        let usable = backends.filter { !excluded.contains($0.displayName) }
        let healthy = usable.filter { !health.isCoolingDown($0.displayName) }
        let cooling = usable.filter { health.isCoolingDown($0.displayName) }
        guard striped, bytes > 0, healthy.count > 1 else { return healthy + cooling }
        return rates.ranked(healthy.map(\.displayName), bytes: bytes).map { healthy[$0] } + cooling
    }

    /// Writes `range` of `file` into `sink`; returns the source that served it.
    ///
    /// - Parameter excluding: sources (display names) not to use, e.g. ones that served corrupt bytes.
    /// - Parameter verify: runs after a source delivered the range; throwing a
    ///   `SourceError` (kind `.corrupt`) rejects those bytes and moves on to the next source.
    /// - Throws: `SourceError` for cancellation and local write failures (no other source
    ///   would do better), ``AllSourcesFailedError`` otherwise.
    /// - Parameter willTry: told which source is about to be read (for attribution).
    ///
    /// A sink that is a ``ResumableSink`` is not asked again for bytes it already has: the
    /// next source continues from its position, so bytes one source delivered (and that may
    /// already be verified and served) are never overwritten by another.
    @discardableResult
    public func read(_ file: FileSpec, range: Range<Int64>, into sink: any ByteSink, cancel: CancellationToken = .none,
                     excluding excluded: Set<String> = [], willTry: ((any StorageBackend) -> Void)? = nil,
                     verify: ((any StorageBackend) throws -> Void)? = nil) throws -> any StorageBackend {
        var failures: [SourceError] = []
        // Hedging needs a sink the next source can continue (bytes delivered stay delivered),
        // and a healthy source after this one: a working source is never left for one that
        // is cooling down after failures.
        let striped = stripes(file), resumable = sink is any ResumableSink
        let candidates = order(forBytes: Int64(range.count), striped: striped, excluding: excluded)
        let healthy = candidates.filter { !health.isCoolingDown($0.displayName) }.count
        // Sources left for being slow, asked again (without a deadline) if the others fail.
        var hedged: [any StorageBackend] = []
        for (index, backend) in candidates.enumerated() {
            let canHedge = striped && resumable && index + 1 < healthy
            do {
                return try attempt(backend, file, range, into: sink, cancel: cancel, canHedge: canHedge, willTry: willTry, verify: verify)
            } catch let error as HedgedTransfer {
                // Slower than usual, not failed: its rate is lowered, no cool-down.
                failures.append(error.error)
                hedged.append(backend)
            } catch {
                try recordFailure(error, of: backend, into: &failures)
            }
        }
        for backend in hedged {
            do {
                return try attempt(backend, file, range, into: sink, cancel: cancel, canHedge: false, willTry: willTry, verify: verify)
            } catch {
                try recordFailure(error, of: backend, into: &failures)
            }
        }
        throw AllSourcesFailedError(path: file.path, failures: failures)
    }

    /// One source's try at the rest of `range` (from the sink's resume position).
    private func attempt(_ backend: any StorageBackend, _ file: FileSpec, _ range: Range<Int64>, into sink: any ByteSink,
                         cancel: CancellationToken, canHedge: Bool, willTry: ((any StorageBackend) -> Void)?,
                         verify: ((any StorageBackend) throws -> Void)?) throws -> any StorageBackend {
        willTry?(backend)
        let start = max(range.lowerBound, (sink as? any ResumableSink)?.resumePosition ?? range.lowerBound)
        if start < range.upperBound {
            try transfer(backend, file, start..<range.upperBound, into: sink, cancel: cancel, canHedge: canHedge)
        }
        try verify?(backend)
        health.recordSuccess(backend.displayName)
        return backend
    }

    /// A source's failure: recorded for the final error (and its health, when it says
    /// something about availability); rethrown when no other source could do better.
    private func recordFailure(_ error: any Error, of backend: any StorageBackend, into failures: inout [SourceError]) throws {
        if let error = error as? SourceError {
            if error.kind == .cancelled || error.kind == .localIO { throw error }
            health.recordFailure(backend.displayName, error: error)
            failures.append(error)
        } else if let error = error as? any CodedError {
            // A verify closure may throw the cache's own errors (e.g. a checksum mismatch).
            let failure = SourceError(error.code == .checksumFail ? .corrupt : .localIO, source: backend.displayName,
                                      message: error.description, localCode: error.code)
            failures.append(failure)
            if error.code != .checksumFail { throw failure }
        } else {
            throw error
        }
    }

    /// A transfer cancelled by its hedge deadline (not by the caller): the read goes on elsewhere.
    struct HedgedTransfer: Error {
        let error: SourceError
    }

    /// One source's transfer, counted in its rate; one cancelled by its hedge deadline throws
    /// ``HedgedTransfer``.
    private func transfer(_ backend: any StorageBackend, _ file: FileSpec, _ range: Range<Int64>, into sink: any ByteSink,
                          cancel: CancellationToken, canHedge: Bool) throws {
        let attempt = rates.begin(backend.displayName, bytes: Int64(range.count), parent: cancel, canHedge: canHedge)
        do {
            try backend.read(file.path, range: range, fileSize: file.size, into: sink, cancel: attempt.token)
            rates.end(attempt, delivered: true)
        } catch where error.kind == .cancelled && attempt.hedged && !cancel.isCancelled {
            rates.end(attempt, delivered: false)
            throw HedgedTransfer(error: SourceError(.timeout, source: backend.displayName,
                                                    message: "bytes \(range.lowerBound)..<\(range.upperBound) took far longer than this source's recent reads; the rest is read from the next source"))
        } catch {
            rates.end(attempt, delivered: false)
            throw error
        }
    }

    /// Size and identity of `file` from the first source that has it.
    public func stat(_ path: String, cancel: CancellationToken = .none) throws -> (RemoteFile, any StorageBackend) {
        var failures: [SourceError] = []
        for backend in order {
            do {
                let file = try backend.stat(path, cancel: cancel)
                health.recordSuccess(backend.displayName)
                return (file, backend)
            } catch {
                if error.kind == .cancelled { throw error }
                health.recordFailure(backend.displayName, error: error)
                failures.append(error)
            }
        }
        throw AllSourcesFailedError(path: path, failures: failures)
    }
}

/// A sink that knows how far its range has been written without a gap, so a reader can
/// continue from there instead of starting over.
public protocol ResumableSink: ByteSink {
    var resumePosition: Int64 { get }
}
