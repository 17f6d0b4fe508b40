import Foundation
import Synchronization
import WanCore
import WanSources
import WanSystem

/// Computes a file's size, sha256 and chunk digests in one pass, from a local file or
/// streamed from a source (for `wan models manifest` and `migrate`).
public struct ContentDigester: Sendable {
    /// Bytes per chunk digest.
    public let chunkSize: Int64

    public init(chunkSize: Int64 = 16 << 20) {
        self.chunkSize = chunkSize
    }

    /// The manifest entry for `path` (relative name) with the digests of `bytes`.
    final class Accumulator: ByteSink, Sendable {
        let chunkSize: Int64
        /// The digests so far, and where the stream stands, changed together.
        private struct State {
            let whole = SHA256Hasher()
            var chunk = SHA256Hasher()
            var inChunk: Int64 = 0
            var chunks: [String] = []
            var size: Int64 = 0
        }
        private let state = Mutex(State())

        init(chunkSize: Int64) { self.chunkSize = chunkSize }

        /// Bytes must arrive in order (one sequential stream).
        func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
            try state.withLock { s in
                guard offset == s.size else {
                    throw SourceError(.protocolViolation, source: "digester", message: "bytes at \(offset) arrived out of order (expected \(s.size))")
                }
                s.whole.update(bytes)
                var rest = bytes
                while !rest.isEmpty {
                    let take = Int(min(Int64(rest.count), chunkSize - s.inChunk))
                    s.chunk.update(UnsafeRawBufferPointer(rebasing: rest[..<take]))
                    s.inChunk += Int64(take)
                    if s.inChunk == chunkSize {
                        s.chunks.append(s.chunk.finalize().hex)
                        s.chunk = SHA256Hasher()
                        s.inChunk = 0
                    }
                    rest = UnsafeRawBufferPointer(rebasing: rest[take...])
                }
                s.size += Int64(bytes.count)
            }
        }

        func finish(path: String) -> FileSpec {
            state.withLock { s in
                if s.inChunk > 0 { s.chunks.append(s.chunk.finalize().hex) }
                return FileSpec(path: path, size: s.size, sha256: s.whole.finalize().hex, chunkSize: s.size > 0 ? chunkSize : nil,
                                chunks: s.size > 0 ? s.chunks : nil)
            }
        }
    }

    /// Digests a local file.
    public func digest(fileAt fullPath: String, as path: String) throws -> FileSpec {
        let accumulator = Accumulator(chunkSize: chunkSize)
        let fd = try FileDescriptor.open(fullPath, .readOnly)
        defer { fd.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while true {
            let n = try fd.read(into: buffer, at: offset)
            if n == 0 { break }
            try accumulator.write(UnsafeRawBufferPointer(rebasing: buffer[..<n]), at: offset)
            offset += Int64(n)
        }
        return accumulator.finish(path: path)
    }

    /// Digests a file streamed from a source, in order, `chunkSize` bytes per request.
    public func digest(_ file: RemoteFile, from backend: any StorageBackend, cancel: CancellationToken = .none) throws -> FileSpec {
        let accumulator = Accumulator(chunkSize: chunkSize)
        var offset: Int64 = 0
        while offset < file.size {
            let end = min(file.size, offset + max(chunkSize, 16 << 20))
            try backend.read(file.path, range: offset..<end, fileSize: file.size, into: accumulator, cancel: cancel)
            offset = end
        }
        return accumulator.finish(path: file.path)
    }
}
