import Foundation
import WanCore
import WanSources
import WanSystem

// wan-bench read URL [--connections N] [--request-mib M] [--repeat R]
//   Reads the whole object at URL through wanfs's HTTP engine (HttpStore: pooled libcurl
//   handles, checked Range GETs) into a discarding sink, N range requests in flight, and
//   prints one JSON line per run: {"bytes", "seconds", "mb_per_s"}.

func usage() -> Never {
    FileHandle.standardError.write(Data("usage: wan-bench read URL [--connections N] [--request-mib M] [--repeat R]\n".utf8))
    exit(2)
}

var arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.count >= 2, arguments[0] == "read" else { usage() }
let url = arguments[1]
var connections = 1, requestMiB = 16, repeats = 1
var index = 2
while index + 1 < arguments.count {
    guard let value = Int(arguments[index + 1]) else { usage() }
    switch arguments[index] {
    case "--connections": connections = value
    case "--request-mib": requestMiB = value
    case "--repeat": repeats = value
    default: usage()
    }
    index += 2
}

guard let slash = url.lastIndex(of: "/") else { usage() }
let base = String(url[..<slash]), path = String(url[url.index(after: slash)...])
let store = try HttpStore(source: SourceURL(parsing: base), client: HTTPClient(retry: RetryPolicy(attempts: 0)))
let size = try store.stat(path, cancel: .none).size

for _ in 0..<repeats {
    let sink = DiscardSink()
    let started = Date()
    if connections == 1 {
        // One stream: a single GET of the whole object, as curl does.
        try store.read(path, range: 0..<size, fileSize: size, into: sink, cancel: .none)
    } else {
        let request = Int64(requestMiB) << 20
        let next = Counter()
        let failure = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: connections) { _ in
            while true {
                let start = next.take(request)
                guard start < size, !failure.isSet else { return }
                do { try store.read(path, range: start..<min(size, start + request), fileSize: size, into: sink, cancel: .none) } catch {
                    failure.set("\(error)")
                }
            }
        }
        if let message = failure.message { FileHandle.standardError.write(Data("error: \(message)\n".utf8)); exit(1) }
    }
    let seconds = Date().timeIntervalSince(started)
    guard sink.bytesWritten == size else {
        FileHandle.standardError.write(Data("error: read \(sink.bytesWritten) of \(size) bytes\n".utf8))
        exit(1)
    }
    print("{\"bytes\": \(size), \"seconds\": \(String(format: "%.4f", seconds)), \"mb_per_s\": \(String(format: "%.1f", Double(size) / seconds / 1e6))}")
}

/// Hands out consecutive offsets to the reader threads.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int64 = 0
    func take(_ step: Int64) -> Int64 {
        lock.lock()
        defer { lock.unlock() }
        let current = value
        value += step
        return current
    }
}

final class ErrorBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var message: String?
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return message != nil }
    func set(_ text: String) { lock.lock(); message = message ?? text; lock.unlock() }
}
