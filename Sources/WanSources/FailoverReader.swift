import WanCore

/// Reads a file from the first source that delivers good bytes, in priority order.
///
/// A source that fails (after its own retries), or whose bytes fail `verify`, hands over
/// to the next one. Sources in cool-down (see ``SourceHealth``) are tried last rather than
/// first. When every source has failed, the error names each one and why.
public struct FailoverReader: Sendable {
    public let backends: [any StorageBackend]
    public let health: SourceHealth

    public init(backends: [any StorageBackend], health: SourceHealth = .shared) {
        self.backends = backends
        self.health = health
    }

    /// The backends in the order they will be tried now.
    public var order: [any StorageBackend] {
        let healthy = backends.filter { !health.isCoolingDown($0.displayName) }
        let cooling = backends.filter { health.isCoolingDown($0.displayName) }
        return healthy + cooling
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
        for backend in order where !excluded.contains(backend.displayName) {
            do {
                willTry?(backend)
                let start = max(range.lowerBound, (sink as? any ResumableSink)?.resumePosition ?? range.lowerBound)
                if start < range.upperBound {
                    try backend.read(file.path, range: start..<range.upperBound, fileSize: file.size, into: sink, cancel: cancel)
                }
                try verify?(backend)
                health.recordSuccess(backend.displayName)
                return backend
            } catch let error as SourceError {
                if error.kind == .cancelled || error.kind == .localIO { throw error }
                health.recordFailure(backend.displayName, error: error)
                failures.append(error)
            } catch let error as any CodedError {
                // A verify closure may throw the cache's own errors (e.g. a checksum mismatch).
                failures.append(SourceError(error.code == .checksumFail ? .corrupt : .localIO, source: backend.displayName,
                                            message: error.description, localCode: error.code))
                if error.code != .checksumFail { throw failures.last! }
            }
        }
        throw AllSourcesFailedError(path: file.path, failures: failures)
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
