import Foundation
import Testing
import WanTestSupport

/// `wan serve` as a sidecar runs: a real HTTP server on 127.0.0.1, asked with curl, over a
/// MODELS_ROOT the CLI fills.
@Suite(.serialized) struct ServeCommandTests {
    typealias Server = SidecarServer

    @Test func statusHealthStorageAndMetricsFollowTheCache() throws {
        let server = try Server()
        var health = try server.get("/health/models")
        #expect(health.status == 200)
        var entry = try #require((try health.json()["models"] as? [String: Any])?["srv@1.0"] as? [String: Any])
        #expect(entry["state"] as? String == "NOT_PRESENT" && entry["health_status"] as? String == "missing")
        #expect(try health.json()["status"] as? String == "degraded")
        let notReady = try server.get("/health/models/srv@1.0")
        #expect(notReady.status == 503, "one model's readiness: 503 until it is complete")
        #expect(((try notReady.json()["models"] as? [String: Any])?["srv@1.0"] as? [String: Any])?["state"] as? String == "NOT_PRESENT")
        var detail = try server.get("/api/v1/models/status/detailed/srv@1.0").json()
        #expect(detail["availability_status"] as? String == "missing" && detail["is_available"] as? Bool == false)

        let ensure = try WanProcess.run(["models", "ensure", "--only", "srv@1.0"], environment: server.env)
        #expect(ensure.status == 0, "\(ensure.stderr)")

        health = try server.get("/health/models/srv@1.0")
        #expect(health.status == 200)
        entry = try #require((try health.json()["models"] as? [String: Any])?["srv@1.0"] as? [String: Any])
        #expect(entry["state"] as? String == "COMPLETE" && entry["health_status"] as? String == "healthy")
        let report = try server.get("/api/v1/models/status/detailed").json()
        detail = try #require((report["models"] as? [String: Any])?["srv@1.0"] as? [String: Any])
        #expect(detail["availability_status"] as? String == "available")
        #expect(detail["size_mb"] as? Double == Double(server.model.totalSize) / 1e6)
        #expect(detail["integrity_score"] as? Double == 1)
        #expect(detail.keys.contains("average_generation_time") && detail["average_generation_time"] is NSNull, "no real signal: null")
        #expect((report["summary"] as? [String: Any])?["available_models"] as? Int == 1)
        #expect((report["system_statistics"] as? [String: Any])?["total_models"] as? Int == 1)

        let storage = try server.get("/api/v1/models/storage").json()
        let models = try #require(storage["models_storage"] as? [[String: Any]])
        #expect(models.first?["model_id"] as? String == "srv@1.0")
        #expect(((storage["storage_summary"] as? [String: Any])?["used_space_gb"] as? Double ?? 0) > 0)

        let config = try server.get("/api/v1/config/current").json()
        #expect((config["storage"] as? [String: Any])?["models_directory"] as? String == server.env["MODELS_ROOT"])
        #expect((config["downloads"] as? [String: Any])?["max_retries"] as? Int == 3)
        #expect((config["storage"] as? [String: Any])?["max_storage_gb"] is NSNull)

        let metrics = try server.get("/metrics")
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        // Parsed by prometheus_client: the counters moved with the two files downloaded.
        #expect(try server.metric("model_downloads_total", ["model": "srv@1.0", "status": "completed"]) == 2, "\(metrics.body)")
        #expect(try server.metric("model_download_duration_seconds_count") == 2)
        // The disk usage is measured every ten seconds beside the requests, not per scrape.
        let measured = Date().addingTimeInterval(25)
        while Date() < measured, (try server.metric("model_storage_bytes_used", ["family": "srv"]) ?? 0) < Double(server.model.totalSize) {
            Thread.sleep(forTimeInterval: 0.5)
        }
        #expect((try server.metric("model_storage_bytes_used", ["family": "srv"]) ?? 0) >= Double(server.model.totalSize))
        #expect(try server.metric("wan_read_bytes_total", ["served_from": "cache"]) == 0, "no mount on this MODELS_ROOT")

        server.process.terminate()
        server.process.waitUntilExit()
        #expect(server.process.terminationStatus == 0, "SIGTERM is a clean shutdown")
    }

    @Test func aHealthCheckReHashesAndFindsBitRot() throws {
        let server = try Server()
        #expect(try WanProcess.run(["models", "ensure", "--only", "srv@1.0"], environment: server.env).status == 0)
        func entry() throws -> [String: Any] {
            try #require((try server.get("/api/v1/models/health/srv@1.0").json()["model_health"] as? [String: Any])?["srv@1.0"] as? [String: Any])
        }
        #expect(try entry()["health_status"] as? String == "healthy")
        #expect(try entry()["last_check"] is NSNull)
        func check() throws -> [String: Any] {
            let started = try server.get("/api/v1/models/health/srv@1.0/check", post: "{\"check_type\": \"integrity\"}")
            #expect(started.status == 200, "\(started.body)")
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline, try entry()["check_running"] as? Bool == true { Thread.sleep(forTimeInterval: 0.1) }
            return try entry()
        }
        var result = try check()
        #expect(result["last_check"] is String && result["health_status"] as? String == "healthy")

        // Bit rot in the cached blob: the next check finds it.
        let blob = server.env["MODELS_ROOT"]! + "/wan22/srv@1.0/unet/w.bin"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: blob))
        bytes[1000] ^= 0xff
        chmod(blob, 0o644)
        try bytes.write(to: URL(fileURLWithPath: blob))
        result = try check()
        #expect(result["health_status"] as? String == "corrupted")
        #expect((result["corruption_types"] as? [String])?.contains("checksum_mismatch") == true)
        let system = try #require(try server.get("/api/v1/models/health").json()["system_health"] as? [String: Any])
        #expect(system["models_corrupted"] as? Int == 1 && system["corrupted_models"] as? Int == 1)

        // Repair: re-hash, quarantine the damaged content, download it again.
        let repair = try server.post("/api/v1/models/health/srv@1.0/repair", ["repair_type": "auto"])
        #expect(repair.status == 200, "\(repair.body)")
        let actions = try #require(try repair.json()["actions_taken"] as? [String])
        #expect(actions.contains("integrity_check") && actions.contains("quarantine") && actions.contains("partial_redownload"), "\(actions)")
        let done = try server.poll("/api/v1/models/download/progress/srv@1.0") { $0["status"] as? String == "COMPLETED" }
        #expect(done["status"] as? String == "COMPLETED", "\(done)")
        result = try check()
        #expect(result["health_status"] as? String == "healthy", "\(result)")
        let repaired = try Shell.run("/usr/bin/sha256sum", [blob])
        #expect(repaired.output.hasPrefix(server.model.file("unet/w.bin").sha256))
        let nothing = try server.post("/api/v1/models/health/srv@1.0/repair", [:])
        #expect(try nothing.json()["actions_taken"] as? [String] == [], "a healthy model needs no repair without force_repair")
        #expect(try server.post("/api/v1/models/health/srv@1.0/repair", ["repair_type": "magic"]).errorField == "repair_type")

        let bad = try server.get("/api/v1/models/health/srv@1.0/check", post: "{\"check_type\": \"vibes\"}")
        #expect(bad.status == 422)
        #expect((try bad.json()["error"] as? [String: Any])?["code"] as? String == "VALIDATION_ERROR")
        #expect(try server.get("/api/v1/models/health/nope@1.0/check", post: "{}").status == 404)
    }

    @Test func cleanupDryRunRemovesNothingAndTheRealRunReclaimsWhatItReported() throws {
        let models = [ModelFixture(modelID: "old@1.0", sizes: [("a.bin", 3 << 20)], seed: 31),
                      ModelFixture(modelID: "kept@1.0", sizes: [("b.bin", 2 << 20)], seed: 32)]
        let server = try Server(models: models)
        for id in ["old@1.0", "kept@1.0"] {
            #expect(try WanProcess.run(["models", "ensure", "--only", id], environment: server.env).status == 0)
        }
        #expect(try WanProcess.run(["models", "pin", "kept@1.0"], environment: server.env).status == 0)
        let root = server.env["MODELS_ROOT"]!
        /// Allocated bytes of the blobs and model directories (du counts hard links once; the
        /// state database beside them grows with every request, so it is left out).
        func usedBytes() throws -> Double {
            let du = try Shell.run("/usr/bin/du", ["-s", "-B1", "-c", root + "/.blobs", root + "/wan22"])
            return Double(du.output.split(separator: "\n").last?.split(separator: "\t").first ?? "") ?? -1
        }
        let before = try usedBytes()

        let dry = try server.post("/api/v1/models/cleanup", ["keep_recent_days": 0]).json()
        #expect(dry["dry_run"] as? Bool == true, "dry run by default")
        let plan = try #require(dry["recommendations"] as? [String: Any])
        let planned = try #require(plan["cleanup_actions"] as? [[String: Any]])
        #expect(planned.map { $0["model_id"] as? String } == ["old@1.0"], "\(planned)")
        #expect(dry["models_preserved"] as? [String] == ["kept@1.0"], "pinned models stay")
        let reported = (plan["space_to_free_gb"] as? Double ?? 0) * 1e9
        #expect(reported >= Double(3 << 20))
        #expect(FileManager.default.fileExists(atPath: root + "/wan22/old@1.0/a.bin"), "a dry run removes nothing")
        #expect(try usedBytes() == before)

        let real = try server.post("/api/v1/models/cleanup", ["keep_recent_days": 0, "dry_run": false]).json()
        #expect(real["models_removed"] as? [String] == ["old@1.0"])
        #expect((real["executed_actions"] as? [[String: Any]])?.count == 1)
        #expect((real["total_space_freed_gb"] as? Double ?? 0) * 1e9 == reported, "reclaims what the dry run reported")
        #expect(!FileManager.default.fileExists(atPath: root + "/wan22/old@1.0"))
        let after = try usedBytes()
        #expect(abs((before - after) - reported) <= 16384, "disk usage dropped by the reported amount (directories aside): \(before) -> \(after), reported \(reported)")
        #expect(FileManager.default.fileExists(atPath: root + "/wan22/kept@1.0/b.bin"))

        let manual = try server.post("/api/v1/models/cleanup", ["cleanup_type": "manual", "models_to_remove": ["kept@1.0"], "dry_run": false])
        #expect(manual.status == 409 && manual.errorCode == "CONFLICT", "naming only a pinned model: \(manual.body)")
        #expect(try server.post("/api/v1/models/cleanup", ["cleanup_type": "manual"]).errorField == "models_to_remove")
        #expect(try server.post("/api/v1/models/cleanup", ["dry_run": "yes"]).errorField == "dry_run")
    }

    @Test func errorsUseTheEnvelopeAndBearerAuthGuardsTheAPIOnly() throws {
        let server = try Server(token: "s3cret-token")
        let unknown = try server.get("/api/v1/models/status/detailed/nope@1.0", token: "s3cret-token")
        #expect(unknown.status == 404)
        let error = try #require(try unknown.json()["error"] as? [String: Any])
        #expect(error["code"] as? String == "MODEL_NOT_FOUND")
        #expect(error["request_id"] as? String == unknown.headers["x-request-id"])
        #expect(error["timestamp"] is String && error["details"] is [String: Any])

        let anonymous = try server.get("/api/v1/models/status/detailed")
        #expect(anonymous.status == 401)
        #expect(anonymous.headers["www-authenticate"] == "Bearer")
        #expect((try anonymous.json()["error"] as? [String: Any])?["code"] as? String == "UNAUTHORIZED")
        #expect(try server.get("/api/v1/models/status/detailed", token: "wrong").status == 401)
        #expect(try server.get("/api/v1/models/status/detailed", token: "s3cret-token").status == 200)
        #expect(try server.get("/health/models").status == 200, "probes need no token")
        #expect(try server.get("/metrics").status == 200, "scrapers need no token")
        #expect(try server.get("/api/v1/no/such/route", token: "s3cret-token").status == 404)
        #expect(!(try server.get("/api/v1/models/status/detailed").body.contains("s3cret-token")))

        // Structured logs: one JSON object per line, the access line carrying the request id.
        let id = try #require(unknown.headers["x-request-id"])
        let lines = server.log.split(separator: "\n").compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: String] }
        let access = lines.first { $0["request_id"] == id }
        #expect(access?["component"] == "http" && access?["level"] == "INFO" && access?["message"]?.contains("404") == true, "\(lines.suffix(3))")
        #expect(access?["ts"]?.hasSuffix("Z") == true && access?["duration_ms"] != nil)
        #expect(!server.log.contains("s3cret-token"), "the token is never logged")
    }

    @Test func badListenAddressesAndTokenFilesAreUsageErrors() throws {
        let env = ["MODELS_ROOT": NSTemporaryDirectory() + "wan-serve-bad", "WAN_MODELS_MANIFEST": "/nonexistent.toml"]
        let listen = try WanProcess.run(["serve", "--listen", "localhost"], environment: env)
        #expect(listen.status == 2 && listen.stderr.contains("--listen"), "\(listen.stderr)")
        let token = try WanProcess.run(["serve", "--auth-token-file", "/nonexistent-token"], environment: env)
        #expect(token.status == 2 && token.stderr.contains("auth-token-file"), "\(token.stderr)")
    }

    /// Safe by default on a shared host: no other machine is served without a token, and a token
    /// file others can read is refused.
    @Test func anOpenListenNeedsATokenAndTokenFilesMustBePrivate() throws {
        let scratch = try Scratch("wan-serve-safe")
        let env = ["MODELS_ROOT": scratch.path + "/root", "WAN_MODELS_MANIFEST": scratch.path + "/never-read.toml"]
        for address in ["0.0.0.0:8000", "[::]:8000", "192.0.2.1:8000"] {
            let open = try WanProcess.run(["serve", "--listen", address], environment: env)
            #expect(open.status == 2 && open.stderr.contains("--auth-token-file") && open.stderr.contains("loopback"), "\(address): \(open.stderr)")
        }
        let shared = try scratch.write("token", "s3cret-token\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: shared)
        let readable = try WanProcess.run(["serve", "--listen", "0.0.0.0:8000", "--auth-token-file", shared], environment: env)
        #expect(readable.status == 2 && readable.stderr.contains(shared) && readable.stderr.contains("0644"), "\(readable.stderr)")
        #expect(!readable.stderr.contains("s3cret-token"))
        let adminShared = try scratch.write("admin", "root-token\n")
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: adminShared)
        let admin = try WanProcess.run(["serve", "--admin-token-file", adminShared], environment: env)
        #expect(admin.status == 2 && admin.stderr.contains("--admin-token-file") && admin.stderr.contains("0640"), "\(admin.stderr)")
    }

    /// `--listen 127.0.0.1:0` takes a free port and says which.
    @Test func portZeroTakesAFreePortAndSaysWhich() throws {
        let scratch = try Scratch("wan-serve-port0")
        let log = scratch.path + "/serve.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let process = Process()
        process.executableURL = WanProcess.binary
        process.arguments = ["serve", "--listen", "127.0.0.1:0", "--log-format", "text"]
        let manifest = ModelFixture.manifest([ModelFixture(modelID: "port0@1.0", sizes: [("w.bin", 16)]).manifestEntry(sources: ["local://\(scratch.path)/src"])])
        process.environment = ["MODELS_ROOT": scratch.path + "/root", "WAN_MODELS_MANIFEST": try scratch.write("models.toml", manifest),
                               "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        defer { process.terminate(); process.waitUntilExit() }
        var port: Int?
        let deadline = Date().addingTimeInterval(20)
        while port == nil && Date() < deadline && process.isRunning {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"listening on http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) {
                port = Int(text[range].split(separator: ":").last ?? "")
            } else {
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        let bound = try #require(port, "no port printed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        #expect(bound > 0)
        let reply = try Shell.run("/usr/bin/curl", ["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(bound)/health/models"])
        #expect(reply.output == "200", "the printed port answers: \(reply.output)")
    }
}
