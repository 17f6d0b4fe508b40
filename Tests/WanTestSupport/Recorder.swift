import Foundation

/// A small listener on 127.0.0.1 (Tests/clients/recorder.py) that records what reaches it:
/// TCP connections (`tcp`), or HTTP requests with their headers (`http`, `hf-tree`). It stops
/// when the value is released.
public final class Recorder: @unchecked Sendable {
    public let port: Int
    private let process: Process
    private let input: Pipe
    private let log: String

    /// - Parameters:
    ///   - mode: `tcp`, `http`, or `hf-tree` (then `next` is the tree page's `Link` target).
    public init(_ mode: String, next: String? = nil) throws {
        log = NSTemporaryDirectory() + "wan-recorder-\(UUID().uuidString.prefix(8)).jsonl"
        _ = FileManager.default.createFile(atPath: log, contents: Data())
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", TestServers.repositoryRoot + "/Tests/clients/recorder.py", mode, log] + (next.map { [$0] } ?? [])
        input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestEnvironmentError("recorder.py \(mode) did not print its port")
        }
        self.port = port
    }

    deinit {
        try? input.fileHandleForWriting.close()
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: log)
    }

    /// What reached it so far, one dictionary per connection or request.
    public var records: [[String: Any]] {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The request headers of every HTTP request it got.
    public var headers: [[String: String]] { records.compactMap { $0["headers"] as? [String: String] } }
}

/// `text` in base64url without padding (for the fault server's redirect targets).
public func base64URL(_ text: String) -> String {
    Data(text.utf8).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// Lines from a pipe, with a timeout.
public final class LineReader: @unchecked Sendable {
    private let handle: FileHandle
    private var buffer = Data()
    public init(_ handle: FileHandle) { self.handle = handle }

    /// The next line, or nil at end of file or after `timeout` seconds.
    public func next(timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                buffer.removeSubrange(buffer.startIndex...newline)
                return line
            }
            var poller = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 200) >= 0 else { return nil }
            if poller.revents != 0 {
                let chunk = handle.availableData
                if chunk.isEmpty { return nil }
                buffer.append(chunk)
            }
        }
        return nil
    }
}
