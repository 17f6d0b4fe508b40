import Foundation
import Synchronization

/// The local test servers of `testenv/servers.sh` (nginx, SeaweedFS, moto, rclone, olah,
/// the HF fixture, the fault server), all on 127.0.0.1.
///
/// `scripts/test.sh` starts them and exports their addresses; a test run without those
/// variables starts them itself (once per process). If they cannot start, tests that need
/// them fail loudly with the reason; they are never skipped.
public enum TestServers {
    private static let loaded = Mutex<Result<[String: String], TestEnvironmentError>?>(nil)

    /// The repository root (this file is Tests/WanTestSupport/TestServers.swift).
    public static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// The servers' variables, starting them if needed.
    public static func environment() throws -> [String: String] {
        try loaded.withLock { cache -> [String: String] in
            if let cache { return try cache.get() }
            let result = load()
            cache = result
            return try result.get()
        }
    }

    /// One variable, e.g. `WAN_TEST_HTTP`.
    public static func value(_ name: String) throws -> String {
        guard let value = try environment()[name] else { throw TestEnvironmentError("test servers did not export \(name)") }
        return value
    }

    private static func load() -> Result<[String: String], TestEnvironmentError> {
        let env = ProcessInfo.processInfo.environment
        if env["WAN_TEST_HTTP"] != nil { return .success(env.filter { $0.key.hasPrefix("WAN_TEST_") }) }
        do {
            let start = try Shell.run("/bin/bash", [repositoryRoot + "/testenv/servers.sh", "start"])
            guard start.status == 0 else { return .failure(TestEnvironmentError("testenv/servers.sh start failed:\n\(start.output)")) }
            var values: [String: String] = [:]
            for line in start.output.split(separator: "\n") where line.hasPrefix("export ") {
                let assignment = line.dropFirst("export ".count)
                guard let equals = assignment.firstIndex(of: "=") else { continue }
                var value = String(assignment[assignment.index(after: equals)...])
                if value.hasPrefix("'") && value.hasSuffix("'") { value = String(value.dropFirst().dropLast()) }
                values[String(assignment[..<equals])] = value
            }
            guard values["WAN_TEST_HTTP"] != nil else { return .failure(TestEnvironmentError("servers.sh printed no environment:\n\(start.output)")) }
            return .success(values)
        } catch {
            return .failure(TestEnvironmentError("cannot run testenv/servers.sh: \(error)"))
        }
    }

    /// A name no other test uses (tests run in parallel and share the servers).
    public static func uniqueName(_ label: String) -> String {
        "\(label)-\(UUID().uuidString.prefix(8).lowercased())"
    }

    // MARK: - Putting data on the servers

    /// Writes a file under nginx's document root; returns its URL.
    @discardableResult
    public static func putHTTP(_ relative: String, _ data: Data) throws -> String {
        let root = try value("WAN_TEST_HTTP_ROOT")
        let full = root + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: full))
        return try value("WAN_TEST_HTTP") + "/" + relative
    }

    /// Writes a file where the fault server serves it; returns the path to ask for after the behaviour segment.
    @discardableResult
    public static func putFault(_ relative: String, _ data: Data) throws -> String {
        let full = try value("WAN_TEST_FAULTS_ROOT") + "/" + relative
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: full))
        return relative
    }

    /// Uploads an object to SeaweedFS (bucket `models`) with the admin key (curl's SigV4).
    public static func putS3(_ key: String, _ data: Data, endpoint: String? = nil, accessKey: String? = nil,
                             secretKey: String? = nil, bucket: String = "models") throws {
        let file = NSTemporaryDirectory() + "wan-s3put-\(UUID().uuidString)"
        try data.write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        let base = try endpoint ?? value("WAN_TEST_S3_ENDPOINT")
        let user = try "\(accessKey ?? value("WAN_TEST_S3_ACCESS_KEY")):\(secretKey ?? value("WAN_TEST_S3_SECRET_KEY"))"
        let url = "\(base)/\(bucket)/\(key.split(separator: "/").map { $0.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? String($0) }.joined(separator: "/"))"
        let result = try Shell.run("/usr/bin/curl", ["-sS", "--fail-with-body", "--max-time", "30", "--aws-sigv4", "aws:amz:us-east-1:s3",
                                                      "--user", user, "-T", file, url])
        guard result.status == 0 else { throw TestEnvironmentError("S3 upload of \(key) failed: \(result.output)") }
    }

    /// Creates a bucket on an S3 server (ignores "already exists").
    public static func createBucket(_ bucket: String, endpoint: String, accessKey: String, secretKey: String) throws {
        _ = try Shell.run("/usr/bin/curl", ["-sS", "--max-time", "30", "--aws-sigv4", "aws:amz:us-east-1:s3",
                                            "--user", "\(accessKey):\(secretKey)", "-X", "PUT", "\(endpoint)/\(bucket)"])
    }

    /// Writes a repo revision for the HF fixture: `files` under `{org}/{repo}/{revision}/`.
    public static func putHF(repo: String, revision: String = "main", files: [String: Data], commit: String? = nil, gated: Bool = false) throws {
        let root = try value("WAN_TEST_HF_ROOT") + "/" + repo
        for (path, data) in files {
            let full = root + "/" + revision + "/" + path
            try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try data.write(to: URL(fileURLWithPath: full))
        }
        if let commit {
            try FileManager.default.createDirectory(atPath: root + "/refs", withIntermediateDirectories: true)
            try Data(commit.utf8).write(to: URL(fileURLWithPath: root + "/refs/" + revision))
        }
        if gated { try Data().write(to: URL(fileURLWithPath: root + "/gated")) }
    }

    // MARK: - Counting at the origin

    /// nginx access-log lines (`uri status bytes "range"`) whose URI contains `fragment`.
    public static func nginxRequests(containing fragment: String) throws -> [(uri: String, status: Int, bytes: Int64, range: String)] {
        let log = try String(contentsOfFile: value("WAN_TEST_HTTP_LOG"), encoding: .utf8)
        return log.split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ", maxSplits: 3)
            guard parts.count == 4, parts[0].contains(fragment), let status = Int(parts[1]), let bytes = Int64(parts[2]) else { return nil }
            return (String(parts[0]), status, bytes, String(parts[3]).trimmingCharacters(in: CharacterSet(charactersIn: "\"")))
        }
    }

    /// Body bytes nginx sent for URIs containing `fragment`.
    public static func nginxBytes(containing fragment: String) throws -> Int64 {
        try nginxRequests(containing: fragment).reduce(0) { $0 + $1.bytes }
    }

    /// The fault server's per-path counters: path → (requests, bytes).
    public static func faultStats() throws -> [String: (requests: Int, bytes: Int64)] {
        let result = try Shell.run("/usr/bin/curl", ["-sS", "--max-time", "10", try value("WAN_TEST_FAULTS") + "/_stats"])
        guard let object = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: [String: Any]] else { return [:] }
        return object.mapValues { (($0["requests"] as? Int) ?? 0, Int64(($0["bytes"] as? Int) ?? 0)) }
    }

    /// HF fixture request log entries (JSON objects) whose path contains `fragment`.
    public static func hfRequests(containing fragment: String) throws -> [[String: Any]] {
        let log = try String(contentsOfFile: value("WAN_TEST_HF_LOG"), encoding: .utf8)
        return log.split(separator: "\n").compactMap { line in
            guard line.contains(fragment) else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
    }
}

/// Deterministic test bytes.
public func testBytes(_ count: Int, seed: UInt64 = 42) -> Data {
    var generator = SplitMix64(seed: seed)
    var bytes = [UInt8](repeating: 0, count: count)
    var i = 0
    while i < count {
        var word = generator.next()
        for _ in 0..<8 where i < count {
            bytes[i] = UInt8(truncatingIfNeeded: word)
            word >>= 8
            i += 1
        }
    }
    return Data(bytes)
}
