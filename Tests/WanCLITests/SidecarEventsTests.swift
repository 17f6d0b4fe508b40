import Foundation
import Synchronization
import Testing
import WanTestSupport

/// The sidecar's WebSocket events, rate limits and admin routes, with real clients.
@Suite(.serialized) struct SidecarEventsTests {
    /// A client process whose stdout lines are collected as they arrive.
    final class Client: Sendable {
        /// Complete lines so far, and the start of the next one.
        final class Lines: Sendable {
            private let state = Mutex<(lines: [String], partial: String)>(([], ""))
            func append(_ chunk: String) {
                state.withLock { s in
                    var parts = (s.partial + chunk).components(separatedBy: "\n")
                    s.partial = parts.removeLast()
                    s.lines += parts
                }
            }
            var all: [String] { state.withLock { $0.lines } }
        }

        let process = Process()
        private let lines = Lines()

        init(_ arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3"] + arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            // A reader thread with blocking reads until EOF (FileHandle.readabilityHandler's
            // dispatch source crashed libdispatch here once the pipe closed).
            let lines = self.lines, handle = pipe.fileHandleForReading
            try process.run()
            let reader = Thread {
                while case let data = handle.availableData, !data.isEmpty { lines.append(String(decoding: data, as: UTF8.self)) }
            }
            reader.start()
        }

        var output: [String] { lines.all }

        /// Waits until a line satisfies `match` or the process ends.
        func wait(timeout: Double, for match: (String) -> Bool = { _ in false }) {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline, process.isRunning, !output.contains(where: match) { Thread.sleep(forTimeInterval: 0.05) }
        }

        /// Waits for the process to end, then for its last output to be read.
        func finish(timeout: Double = 90) {
            wait(timeout: timeout)
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            Thread.sleep(forTimeInterval: 0.2)
        }

        deinit { if process.isRunning { process.terminate() } }
    }

    static let wsClient = TestServers.repositoryRoot + "/Tests/clients/ws_events.py"

    @Test func webSocketClientsReceiveProgressAndAvailabilityEvents() throws {
        let model = ModelFixture(modelID: "ws@1.0", sizes: [("model_index.json", 200), ("w.bin", 12 << 20)], seed: 41)
        let server = try SidecarServer(token: "tok", models: [model], overHTTP: true)
        let url = "ws://127.0.0.1:\(server.port)/ws"

        let refused = try Client([Self.wsClient, url, "5"])
        refused.finish(timeout: 15)
        // hummingbird-websocket refuses an upgrade its router did not answer 200 with a plain 400.
        #expect(refused.output == ["rejected 400"], "no token, no upgrade: \(refused.output)")

        let client = try Client([Self.wsClient, url + "?token=tok", "60", "ws@1.0", "available"])
        client.wait(timeout: 15) { $0 == "connected" }
        #expect(client.output.first == "connected")
        let started = try server.get("/api/v1/models/download/manage", token: "tok",
                                     post: #"{"model_id": "ws@1.0", "action": "start", "bandwidth_limit_mbps": 40}"#)
        #expect(started.status == 200, "\(started.body)")
        client.finish()

        let events = client.output.dropFirst().compactMap { line in
            (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
        }
        let progress = events.filter { $0["type"] as? String == "model_download_progress" && $0["model_id"] as? String == "ws@1.0" }
        let percents = progress.compactMap { $0["progress_percent"] as? Double }
        #expect(progress.count >= 3, "\(events)")
        #expect(percents == percents.sorted() && percents.last == 100, "progress only rises, to 100: \(percents)")
        #expect(progress.first?["status"] as? String == "DOWNLOADING" && progress.last?["status"] as? String == "COMPLETED")
        #expect(progress.contains { ($0["speed_mbps"] as? Double ?? 0) > 0 && $0["eta_seconds"] is Int && $0["timestamp"] is String })
        let changes = events.filter { $0["type"] as? String == "model_availability_change" && $0["model_id"] as? String == "ws@1.0" }
        let path = changes.map { "\($0["old_status"] as? String ?? "?")->\($0["new_status"] as? String ?? "?")" }
        #expect(path.last == "downloading->available", "\(path)")
        #expect(path.first?.hasPrefix("missing->") == true, "\(path)")
    }

    @Test func aCLIEnsureIsSeenByWebSocketClientsToo() throws {
        let server = try SidecarServer()
        let client = try Client([Self.wsClient, "ws://127.0.0.1:\(server.port)/ws", "30", "srv@1.0", "available"])
        client.wait(timeout: 15) { $0 == "connected" }
        #expect(try WanProcess.run(["models", "ensure", "--only", "srv@1.0"], environment: server.env).status == 0)
        client.finish()
        #expect(client.output.contains { $0.contains("\"model_availability_change\"") && $0.contains("\"new_status\":\"available\"") },
                "\(client.output)")
    }

    /// Waits for a fresh rate-limit window when the current one is about to end, so the
    /// counts below all fall into one minute.
    func awayFromTheMinuteBoundary() {
        let second = Int(Date().timeIntervalSince1970) % 60
        if second >= 50 { Thread.sleep(forTimeInterval: Double(61 - second)) }
    }

    @Test func pastTheRateLimitAnswersAre429WithTheHeaders() throws {
        let server = try SidecarServer(arguments: ["--rate-limits", "default:5,download:2"])
        awayFromTheMinuteBoundary()
        for expected in (0..<5).reversed() {
            let reply = try server.get("/api/v1/models/status/detailed")
            #expect(reply.status == 200)
            #expect(reply.headers["x-ratelimit-limit"] == "5" && reply.headers["x-ratelimit-remaining"] == String(expected), "\(reply.headers)")
            #expect(Int(reply.headers["x-ratelimit-reset"] ?? "") ?? 0 > Int(Date().timeIntervalSince1970))
        }
        let limited = try server.get("/api/v1/models/storage")
        #expect(limited.status == 429 && limited.errorCode == "RATE_LIMITED", "\(limited.body)")
        #expect(Int(limited.headers["retry-after"] ?? "") ?? 0 >= 1 && limited.headers["x-ratelimit-remaining"] == "0")
        #expect(limited.error["request_id"] as? String == limited.headers["x-request-id"])
        #expect(try server.get("/health/models").status == 200, "probes are not limited")
        #expect(try server.get("/metrics").status == 200, "scrapes are not limited")

        // The download class counts apart: two manage calls, then 429.
        #expect(try server.post("/api/v1/models/download/manage", ["model_id": "srv@1.0", "action": "pause"]).status == 409)
        #expect(try server.post("/api/v1/models/download/manage", ["model_id": "srv@1.0", "action": "pause"]).status == 409)
        let third = try server.post("/api/v1/models/download/manage", ["model_id": "srv@1.0", "action": "pause"])
        #expect(third.status == 429 && third.headers["x-ratelimit-limit"] == "2")
    }

    @Test func theAdminRoutesNeedTheAdminToken() throws {
        let scratch = try Scratch("wan-admin")
        let admin = try scratch.writeSecret("admin", "root-token\n")
        let server = try SidecarServer(token: "user-token", arguments: ["--admin-token-file", admin])
        let asUser = try server.get("/api/v1/models/cleanup", token: "user-token", post: "{}")
        #expect(asUser.status == 403 && asUser.errorCode == "FORBIDDEN", "\(asUser.body)")
        #expect(try server.get("/api/v1/models/cleanup", token: "root-token", post: "{}").status == 200)
        #expect(try server.get("/api/v1/models/status/detailed", token: "user-token").status == 200)
        #expect(try server.get("/api/v1/models/status/detailed", token: "root-token").status == 200, "the admin token opens every route")
        #expect(try server.get("/api/v1/models/cleanup", post: "{}").status == 401)
        #expect(!server.log.contains("root-token") && !server.log.contains("user-token"), "tokens are never logged")
        #expect(try server.get("/metrics").status == 200 && (try server.get("/health/models").status) == 200, "probes open by default")
    }

    /// The real server, without a token: a foreign Host (DNS rebinding) and a cross-site page's
    /// POST are refused, a form-encoded body too; the same requests from here are answered.
    @Test func withoutATokenTheRealServerAnswersOnlyThisMachine() throws {
        let server = try SidecarServer()
        #expect(try server.get("/api/v1/models/status/detailed", headers: ["Host: evil.example:\(server.port)"]).status == 403)
        #expect(try server.get("/health/models", headers: ["Host: localhost:\(server.port)"]).status == 200)
        let pause = #"{"model_id": "srv@1.0", "action": "pause"}"#
        let crossSite = try server.get("/api/v1/models/download/manage", post: pause, headers: ["Origin: https://evil.example"])
        #expect(crossSite.status == 403 && crossSite.errorCode == "FORBIDDEN", "\(crossSite.body)")
        let form = try server.get("/api/v1/models/download/manage", post: pause, headers: ["Content-Type: text/plain"])
        #expect(form.status == 415 && form.errorCode == "UNSUPPORTED_MEDIA_TYPE", "\(form.body)")
        #expect(try server.get("/api/v1/models/download/manage", post: pause).status == 409, "from here it acts (nothing to pause)")
    }

    @Test func withAuthProbesTheProbesNeedTheTokenToo() throws {
        let server = try SidecarServer(token: "probe-token", arguments: ["--auth-probes"])
        #expect(try server.get("/metrics").status == 401 && (try server.get("/health/models/srv@1.0").status) == 401)
        #expect(try server.get("/metrics", token: "probe-token").status == 200)
        #expect(try server.get("/health/models", token: "probe-token").status == 200)
        let alone = try WanProcess.run(["serve", "--auth-probes"], environment: server.env)
        #expect(alone.status == 2 && alone.stderr.contains("--auth-probes"), "without a token there is nothing to require: \(alone.stderr)")
    }
}
