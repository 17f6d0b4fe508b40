import COpenSSL

/// A sha256 digest.
public struct SHA256Digest: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    /// Lower-case hex, as the manifest writes it.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
    public var description: String { hex }
}

/// Streaming sha256 over OpenSSL's EVP interface (uses SHA-NI where the CPU has it).
///
/// Not thread-safe: one hasher per stream, used by one thread at a time (it may be handed
/// between threads behind a lock, hence `Sendable`). `copy()` forks the state, e.g. to read
/// the digest of a prefix while continuing to hash.
public final class SHA256Hasher: @unchecked Sendable {
    private let context: OpaquePointer

    public init() {
        guard let context = EVP_MD_CTX_new() else { fatalError("OpenSSL: EVP_MD_CTX_new failed (out of memory)") }
        self.context = context
        precondition(EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1, "OpenSSL: sha256 init failed")
    }

    private init(copying other: SHA256Hasher) {
        guard let context = EVP_MD_CTX_new() else { fatalError("OpenSSL: EVP_MD_CTX_new failed (out of memory)") }
        self.context = context
        precondition(EVP_MD_CTX_copy_ex(context, other.context) == 1, "OpenSSL: sha256 copy failed")
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ buffer: UnsafeRawBufferPointer) {
        guard buffer.count > 0 else { return }
        precondition(EVP_DigestUpdate(context, buffer.baseAddress, buffer.count) == 1, "OpenSSL: sha256 update failed")
    }

    public func update(_ bytes: some Sequence<UInt8>) {
        let array = Array(bytes)
        array.withUnsafeBytes { update($0) }
    }

    /// The digest of everything so far. The hasher must not be updated afterwards.
    public func finalize() -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        precondition(EVP_DigestFinal_ex(context, &out, &length) == 1 && length == 32, "OpenSSL: sha256 final failed")
        return SHA256Digest(bytes: out)
    }

    /// An independent hasher with the same state.
    public func copy() -> SHA256Hasher { SHA256Hasher(copying: self) }

    /// The digest of `bytes`.
    public static func hash(_ bytes: some Sequence<UInt8>) -> SHA256Digest {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// The digest of a whole file, read in 4 MiB blocks.
    public static func hash(fileAt path: String) throws(SystemError) -> SHA256Digest {
        let fd = try FileDescriptor.open(path, .readOnly)
        defer { fd.close() }
        let hasher = SHA256Hasher()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        var offset: Int64 = 0
        while true {
            let n = try fd.read(into: buffer, at: offset)
            if n == 0 { break }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
            offset += Int64(n)
        }
        return hasher.finalize()
    }

    /// The OpenSSL library version, e.g. "OpenSSL 3.0.19 ...".
    public static var libraryVersion: String { String(cString: OpenSSL_version(numericCast(OPENSSL_VERSION))) }
}

/// HMAC-SHA256 (for AWS SigV4 signing keys).
public enum HMACSHA256 {
    public static func authenticate(_ message: [UInt8], key: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self),
                         m.count, &out, &length)
            }
        }
        return out
    }
}
