import Foundation
import WanSystem

/// A small model written to disk with deterministic pseudo-random content, and the manifest
/// that describes it. Digests are computed here with OpenSSL directly, independently of the
/// product's own digester.
public struct ModelFixture: Sendable {
    public struct File: Sendable {
        public let path: String
        public let data: Data
        public let sha256: String
        public let chunks: [String]?
        public let chunkSize: Int?
        public var size: Int { data.count }
    }

    public let modelID: String
    public let files: [File]
    public var totalSize: Int { files.reduce(0) { $0 + $1.size } }

    /// - Parameters:
    ///   - sizes: path → size in bytes.
    ///   - chunkSize: when set, files get chunk digests of this size.
    public init(modelID: String, sizes: [(String, Int)], chunkSize: Int? = nil, seed: UInt64 = 1) {
        self.modelID = modelID
        var generator = SplitMix64(seed: seed)
        files = sizes.map { path, size in
            var bytes = [UInt8](repeating: 0, count: size)
            var i = 0
            while i < size {
                var word = generator.next()
                for _ in 0..<8 where i < size {
                    bytes[i] = UInt8(truncatingIfNeeded: word)
                    word >>= 8
                    i += 1
                }
            }
            var chunks: [String]?
            if let chunkSize, size > 0 {
                chunks = stride(from: 0, to: size, by: chunkSize).map { SHA256Hasher.hash(bytes[$0..<min(size, $0 + chunkSize)]).hex }
            }
            return File(path: path, data: Data(bytes), sha256: SHA256Hasher.hash(bytes).hex, chunks: chunks,
                        chunkSize: chunks == nil ? nil : chunkSize)
        }
    }

    public func file(_ path: String) -> File { files.first { $0.path == path }! }

    /// Writes the files under `directory`.
    public func write(to directory: String) throws {
        for file in files {
            let full = directory + "/" + file.path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try file.data.write(to: URL(fileURLWithPath: full))
        }
    }

    /// The `[models."ID"]` entry (no schema_version line).
    public func manifestEntry(sources: [String], overrideSHA: [String: String] = [:]) -> String {
        var lines = ["[models.\"\(modelID)\"]", ""]
        for file in files {
            lines += ["[[models.\"\(modelID)\".files]]", "path = \"\(file.path)\"", "size = \(file.size)",
                      "sha256 = \"\(overrideSHA[file.path] ?? file.sha256)\""]
            if let chunks = file.chunks, let chunkSize = file.chunkSize {
                lines.append("chunk_size = \(chunkSize)")
                lines.append("chunks = [" + chunks.map { "\"\($0)\"" }.joined(separator: ", ") + "]")
            }
            lines.append("")
        }
        lines += ["[models.\"\(modelID)\".sources]", "priority = [" + sources.map { "\"\($0)\"" }.joined(separator: ", ") + "]", ""]
        return lines.joined(separator: "\n")
    }

    /// A whole manifest of several fixtures.
    public static func manifest(_ entries: [String]) -> String {
        "schema_version = 1\n\n" + entries.joined(separator: "\n")
    }
}

/// A tiny, fast, deterministic generator (not for cryptography).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
