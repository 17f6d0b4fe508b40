import Synchronization
import WanCore
import WanSystem

/// The sha256 of a whole file, computed as its bytes arrive: the only input a blob's name is
/// checked against (``BlobStore/commit(_:content:digest:)``).
///
/// Bytes written at the point the digest has reached are hashed right then, from memory, by
/// the thread that wrote them ("in passing"). Bytes that land further on (parallel range
/// requests) are hashed later by ``catchUp(from:to:)``, reading them back from the partial
/// file (from the page cache, moments after they were written), once everything before them
/// is present. A write over bytes already hashed (another source resending a range that
/// broke, a chunk that failed its digest, a range another process recorded) starts the
/// digest over, so it always describes exactly the bytes in the file.
final class WholeFileDigest: Sendable {
    private struct State {
        var hasher = SHA256Hasher()
        var hashedUpTo: Int64 = 0
        var finished: String?
        /// Bytes hashed from memory as they were written, and read back (for the tests and notes).
        var inPassing: Int64 = 0
        var readBack: Int64 = 0
        var restarts = 0
    }

    let size: Int64
    private let state = Mutex(State())

    init(size: Int64) {
        self.size = max(0, size)
    }

    /// How far the digest has hashed.
    var hashedUpTo: Int64 { state.withLock { $0.hashedUpTo } }

    /// (bytes hashed in passing, bytes read back, restarts).
    var accounting: (inPassing: Int64, readBack: Int64, restarts: Int) {
        state.withLock { ($0.inPassing, $0.readBack, $0.restarts) }
    }

    /// `bytes` were just written at `offset` of the partial file.
    func wrote(_ bytes: UnsafeRawBufferPointer, at offset: Int64) {
        guard !bytes.isEmpty else { return }
        state.withLock { state in
            if offset == state.hashedUpTo && state.finished == nil {
                let count = Int(min(Int64(bytes.count), size - offset))
                guard count > 0 else { return }
                state.hasher.update(UnsafeRawBufferPointer(rebasing: bytes[..<count]))
                state.hashedUpTo += Int64(count)
                state.inPassing += Int64(count)
            } else if offset < state.hashedUpTo {
                Self.restart(&state)
            }
        }
    }

    /// The bytes from `offset` on may no longer be what was hashed: start over if the digest
    /// went past it.
    func invalidate(from offset: Int64) {
        state.withLock { state in
            if offset < state.hashedUpTo { Self.restart(&state) }
        }
    }

    private static func restart(_ state: inout State) {
        state.hasher = SHA256Hasher()
        state.hashedUpTo = 0
        state.finished = nil
        state.restarts += 1
    }

    /// Hashes the bytes of `file` from where the digest is up to `end`: bytes that are present
    /// (written, and recorded or verified). Reads 256 KiB at a time, so writers at the digest's
    /// edge wait at most one slice of 256 KiB.
    /// With `pause`, asked every 16 MiB: true stops the catch-up where it is (returns false;
    /// the next call goes on from there). True when it reached `end` (or the file's size).
    @discardableResult
    func catchUp(from file: FileDescriptor, to end: Int64, pause: (() -> Bool)? = nil) throws -> Bool {
        // 256 KiB: stays in the CPU cache between the read and the hash, and is no fresh mmap
        // (page faults, zeroing) per call as larger buffers are.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 4096)
        defer { buffer.deallocate() }
        let limit = min(end, size)
        var slices = 0
        while true {
            slices += 1
            if let pause, slices % 64 == 0, state.withLock({ $0.hashedUpTo < limit && $0.finished == nil }), pause() { return false }
            let more = try state.withLock { state throws -> Bool in
                guard state.hashedUpTo < limit, state.finished == nil else { return false }
                let want = Int(min(Int64(buffer.count), limit - state.hashedUpTo))
                let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[..<want])
                let n = try file.read(into: slice, at: state.hashedUpTo)
                guard n == want else {
                    throw SystemError(errno: 5, operation: "read (the partial file is shorter than its recorded bytes)", path: nil)
                }
                state.hasher.update(UnsafeRawBufferPointer(slice))
                state.hashedUpTo += Int64(n)
                state.readBack += Int64(n)
                return true
            }
            if !more { return true }
        }
    }

    /// The digest's hex once all `size` bytes are hashed; nil before. (Asked again, the same.)
    func finish() -> String? {
        state.withLock { state in
            if let finished = state.finished { return finished }
            guard state.hashedUpTo == size else { return nil }
            let hex = state.hasher.finalize().hex
            state.finished = hex
            return hex
        }
    }
}
