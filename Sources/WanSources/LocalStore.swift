import Foundation
import WanCore
import WanSystem

/// `local://rel/path` (under the local source root) and `local:///abs/path`.
///
/// Paths are resolved with every symlink followed and must stay inside the source's folder:
/// `..` and symlinks that lead out of it are refused.
public struct LocalStore: StorageBackend {
    public let source: SourceURL
    /// The source's folder, absolute.
    public let base: String
    public var displayName: String { source.raw }
    public var usesCredentials: Bool { false }

    /// - Parameter localRoot: the root of relative `local://` sources (WAN_LOCAL_ROOT or the manifest's folder).
    public init(source: SourceURL, localRoot: String) throws(SourceError) {
        guard case .local(let path, let isAbsolute) = source.location else {
            throw SourceError(.misconfigured, source: source.raw, message: "not a local:// source")
        }
        self.source = source
        self.base = isAbsolute ? path : URL(fileURLWithPath: localRoot).appendingPathComponent(path).standardizedFileURL.path
    }

    /// The real path of a file, refusing anything outside `base`.
    func resolve(_ path: String) throws(SourceError) -> String {
        if let problem = PathRules.problem(with: path) {
            throw SourceError(.misconfigured, source: displayName, message: "refusing path '\(path)': \(problem)")
        }
        let realBase: String?
        let realFile: String?
        do {
            realBase = try FileSystem.realPath(base)
            realFile = try FileSystem.realPath(base + "/" + path)
        } catch {
            throw SourceError(.localIO, source: displayName, message: "\(error)", localCode: error.code)
        }
        guard let realBase else { throw SourceError(.notFound, source: displayName, message: "the folder \(base) does not exist") }
        guard let realFile else { throw SourceError(.notFound, source: displayName, message: "\(path) not found") }
        guard realFile.hasPrefix(realBase == "/" ? "/" : realBase + "/") else {
            throw SourceError(.misconfigured, source: displayName, message: "refusing \(path): it resolves to \(realFile), outside \(realBase)")
        }
        return realFile
    }

    public func stat(_ path: String, cancel: CancellationToken) throws(SourceError) -> RemoteFile {
        let real = try resolve(path)
        let info: FileInfo?
        do { info = try FileSystem.info(real) } catch { throw SourceError(.localIO, source: displayName, message: "\(error)") }
        guard let info, info.kind == .regular else {
            throw SourceError(.notFound, source: displayName, message: "\(path) is not a regular file")
        }
        return RemoteFile(path: path, size: info.size, etag: "\(Int64(info.modified))-\(info.size)")
    }

    public func read(_ path: String, range: Range<Int64>, fileSize: Int64?, into sink: any ByteSink,
                     cancel: CancellationToken) throws(SourceError) {
        guard !range.isEmpty, range.lowerBound >= 0 else {
            throw SourceError(.invalidRange, source: displayName, message: "empty or negative range \(range.lowerBound)..<\(range.upperBound) of \(path): nothing to fetch")
        }
        let real = try resolve(path)
        let blockSize = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
        defer { buffer.deallocate() }
        do {
            let fd = try FileDescriptor.open(real, .readOnly)
            defer { fd.close() }
            let size = try fd.info().size
            guard range.upperBound <= size else {
                throw SourceError(.invalidRange, source: displayName, message: "bytes \(range.lowerBound)..<\(range.upperBound) are outside \(path) (\(size) bytes)")
            }
            var offset = range.lowerBound
            while offset < range.upperBound {
                if cancel.isCancelled { throw SourceError(.cancelled, source: displayName, message: "cancelled") }
                let want = Int(min(Int64(blockSize), range.upperBound - offset))
                let n = try fd.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<want]), at: offset)
                guard n > 0 else {
                    throw SourceError(.protocolViolation, source: displayName, message: "\(path) ended at \(offset) while reading to \(range.upperBound)")
                }
                do {
                    try sink.write(UnsafeRawBufferPointer(rebasing: buffer[..<n]), at: offset)
                } catch let error as SourceError {
                    throw error
                } catch {
                    throw SourceError(.localIO, source: displayName, message: "writing fetched bytes failed: \(error)",
                                      localCode: (error as? any CodedError)?.code)
                }
                offset += Int64(n)
            }
        } catch let error as SourceError {
            throw error
        } catch let error as SystemError {
            throw SourceError(.localIO, source: displayName, message: "\(error)", localCode: error.code)
        } catch {
            throw SourceError(.localIO, source: displayName, message: "\(error)")
        }
    }

    public func list(prefix: String, cancel: CancellationToken) throws(SourceError) -> [RemoteFile] {
        let root = prefix.isEmpty ? base : base + "/" + prefix
        guard let realBase = try? FileSystem.realPath(base) else {
            throw SourceError(.notFound, source: displayName, message: "the folder \(base) does not exist")
        }
        guard let enumerator = FileManager.default.enumerator(atPath: root) else {
            throw SourceError(.notFound, source: displayName, message: "\(root) is not a readable folder")
        }
        var files: [RemoteFile] = []
        while let relative = enumerator.nextObject() as? String {
            let path = prefix.isEmpty ? relative : prefix + "/" + relative
            guard let real = try? FileSystem.realPath(base + "/" + path), real.hasPrefix(realBase + "/"),
                  let info = try? FileSystem.info(real), info.kind == .regular else { continue }
            files.append(RemoteFile(path: path, size: info.size))
        }
        return files.sorted { $0.path < $1.path }
    }
}
