import Foundation
import Testing
import WanTestSupport

/// A running `wan serve` over a fresh MODELS_ROOT with models from a local folder or from
/// nginx on 127.0.0.1, asked with curl.
final class SidecarServer: @unchecked Sendable {
    let dir: Scratch
    let models: [ModelFixture]
    let env: [String: String]
    let base: String
    let port: Int
    /// The nginx path prefix of the models' files (HTTP sources only).
    let prefix: String?
    private(set) var process = Process()
    private let arguments: [String]

    var model: ModelFixture { models[0] }

    /// - Parameters:
    ///   - overHTTP: serve the models' files from nginx (so the origin counts bytes) instead of a local folder.
    ///   - arguments: more `wan serve` arguments.
    ///   - manifestExtra: TOML keys added to a model's table (metadata such as `resolution_caps`).
    init(token: String? = nil, models: [ModelFixture]? = nil, overHTTP: Bool = false, arguments extra: [String] = [],
         environment: [String: String] = [:], manifestExtra: [String: String] = [:]) throws {
        dir = try Scratch("wan-serve")
        self.models = models ?? [ModelFixture(modelID: "srv@1.0", sizes: [("model_index.json", 300), ("unet/w.bin", 2 << 20)],
                                              chunkSize: 1 << 20, seed: 21)]
        var entries: [String] = []
        var prefix: String?
        for model in self.models {
            let source: String
            if overHTTP {
                let folder = TestServers.uniqueName("srv")
                for file in model.files { try TestServers.putHTTP("\(folder)/\(model.modelID)/\(file.path)", file.data) }
                source = try TestServers.value("WAN_TEST_HTTP") + "/\(folder)/\(model.modelID)"
                prefix = prefix ?? folder
            } else {
                try model.write(to: dir.path + "/src/" + model.modelID)
                source = "local://\(dir.path)/src/\(model.modelID)"
            }
            var entry = model.manifestEntry(sources: [source])
            if let extra = manifestExtra[model.modelID] {   // keys of the model's own table, before its sub-tables
                let header = "[models.\"\(model.modelID)\"]\n"
                entry = entry.replacingOccurrences(of: header, with: header + extra + "\n")
            }
            entries.append(entry)
        }
        self.prefix = prefix
        let manifest = try dir.write("models.toml", ModelFixture.manifest(entries))
        var env = ["MODELS_ROOT": dir.path + "/root", "WAN_MODELS_MANIFEST": manifest]
        env.merge(environment) { _, new in new }
        self.env = env
        port = try freeLoopbackPort()
        base = "http://127.0.0.1:\(port)"
        var arguments = ["serve", "--listen", "127.0.0.1:\(port)"] + extra
        // The tests poll fast; rate limits are on only where a test asks for them.
        if !extra.contains("--rate-limits") { arguments += ["--rate-limits", "off"] }
        if let token { arguments += ["--auth-token-file", try dir.writeSecret("token", token + "\n")] }
        self.arguments = arguments
        _ = try dir.write("serve.log", "")
        try start()
    }

    private func start() throws {
        process = Process()
        process.executableURL = WanProcess.binary
        process.arguments = arguments
        var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        environment.merge(env) { _, new in new }
        process.environment = environment
        process.standardOutput = FileHandle.nullDevice
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.path + "/serve.log"))
        log.seekToEndOfFile()
        process.standardError = log
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && process.isRunning {
            if (try? get("/health/models").status) != nil { return }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw TestEnvironmentError("wan serve did not answer on \(base): \(self.log.suffix(2000))")
    }

    /// Stops the server (SIGTERM) and starts it again over the same MODELS_ROOT.
    func restart() throws {
        process.terminate()
        process.waitUntilExit()
        try start()
    }

    deinit { if process.isRunning { process.terminate(); process.waitUntilExit() } }

    /// What the server logged on stderr.
    var log: String { (try? String(contentsOfFile: dir.path + "/serve.log", encoding: .utf8)) ?? "" }

    struct Reply {
        let status: Int
        let headers: [String: String]
        let body: String
        func json() throws -> [String: Any] { try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]) }
        /// The error envelope's `error` object (empty when the body has none).
        var error: [String: Any] { ((try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any])?["error"] as? [String: Any] ?? [:] }
        var errorCode: String? { error["code"] as? String }
        var errorField: String? { (error["details"] as? [String: Any])?["field"] as? String }
    }

    /// GET (or POST with `body`, or another `method`) through curl: status, lower-cased headers, body.
    func get(_ path: String, token: String? = nil, post body: String? = nil, method: String? = nil, headers extra: [String] = []) throws -> Reply {
        var arguments = ["-sS", "--max-time", "15", "-D", "-", base + path] + extra.flatMap { ["-H", $0] }
        if let body { arguments += ["-X", method ?? "POST", "-H", "Content-Type: application/json", "--data-raw", body] }
        if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
        let result = try Shell.run("/usr/bin/curl", arguments)
        guard result.status == 0 else { throw TestEnvironmentError("curl \(path): \(result.output)") }
        let parts = result.output.components(separatedBy: "\r\n\r\n")
        let head = parts[0].components(separatedBy: "\r\n")
        let status = Int(head[0].split(separator: " ")[1]) ?? 0
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Reply(status: status, headers: headers, body: parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// POSTs `object` as JSON.
    func post(_ path: String, _ object: [String: Any], method: String = "POST") throws -> Reply {
        let body = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        return try get(path, post: body, method: method)
    }

    struct Sample {
        let name: String
        let labels: [String: String]
        let value: Double
    }

    /// `/metrics` as Prometheus' reference parser (PyPI prometheus_client) reads it; a parse
    /// error fails the call.
    func metrics() throws -> [Sample] {
        let parser = TestServers.repositoryRoot + "/Tests/clients/parse_metrics.py"
        let result = try Shell.run("/bin/sh", ["-c", "curl -sS --max-time 10 \(base)/metrics | python3 \(parser)"])
        guard result.status == 0, let list = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8))) as? [[String: Any]] else {
            throw TestEnvironmentError("/metrics did not parse: \(result.output)")
        }
        return list.map { Sample(name: $0["name"] as? String ?? "", labels: $0["labels"] as? [String: String] ?? [:], value: $0["value"] as? Double ?? .nan) }
    }

    /// The value of the sample `name` with `labels` (nil when absent).
    func metric(_ name: String, _ labels: [String: String] = [:]) throws -> Double? {
        try metrics().first { $0.name == name && $0.labels == labels }?.value
    }

    /// Polls `path` until `done` holds for its JSON (or `timeout` passes); returns the last answer.
    @discardableResult
    func poll(_ path: String, timeout: Double = 30, until done: ([String: Any]) -> Bool) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        var last = try get(path).json()
        while !done(last), Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            last = try get(path).json()
        }
        return last
    }
}
