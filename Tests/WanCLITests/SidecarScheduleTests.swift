import Foundation
import Testing
import WanTestSupport

/// `PUT /config/update` and the schedules it steers: health passes that find bit rot and
/// repair it, GC past the storage threshold.
@Suite(.serialized) struct SidecarScheduleTests {
    @Test func configUpdatesApplyLiveAreValidatedAndSurviveARestart() throws {
        let server = try SidecarServer()
        let before = try server.get("/api/v1/config/current").json()
        #expect((before["health_monitoring"] as? [String: Any])?["check_interval_hours"] as? Double == 24)
        let update = try server.post("/api/v1/config/update", [
            "downloads": ["max_concurrent_downloads": 2, "max_retries": 3],
            "health_monitoring": ["auto_repair_enabled": true],
            "storage": ["max_storage_gb": 12.5],
        ], method: "PUT")
        #expect(update.status == 200, "\(update.body)")
        let answer = try update.json()
        #expect(answer["updated_settings"] as? [String] == ["downloads.max_concurrent_downloads", "health_monitoring.auto_repair_enabled",
                                                            "storage.max_storage_gb"], "max_retries was already 3: \(answer)")
        #expect(answer["restart_required"] as? Bool == false)
        func current() throws -> [String: Any] { try server.get("/api/v1/config/current").json() }
        #expect((try current()["downloads"] as? [String: Any])?["max_concurrent_downloads"] as? Int == 2)
        let storage = try server.get("/api/v1/models/storage").json()["storage_summary"] as? [String: Any]
        #expect(storage?["total_capacity_gb"] as? Double == 12.5, "the storage figures follow max_storage_gb at once")

        for (body, field) in [(["storage": ["models_directory": "/elsewhere"]], "storage.models_directory"),
                              (["downloads": ["max_retries": 99]], "downloads.max_retries"),
                              (["downloads": ["max_concurrent_downloads": "four"]], "downloads.max_concurrent_downloads"),
                              (["health_monitoring": ["auto_repair_enabled": 1]], "health_monitoring.auto_repair_enabled"),
                              (["downloads": 3], "downloads")] as [([String: Any], String)] {
            let reply = try server.post("/api/v1/config/update", body, method: "PUT")
            #expect(reply.status == 422 && reply.errorField == field, "\(body): \(reply.body)")
        }
        #expect((try current()["downloads"] as? [String: Any])?["max_retries"] as? Int == 3, "a rejected update changes nothing")

        try server.restart()
        let after = try current()
        #expect((after["downloads"] as? [String: Any])?["max_concurrent_downloads"] as? Int == 2, "persisted in the state database")
        #expect((after["health_monitoring"] as? [String: Any])?["auto_repair_enabled"] as? Bool == true)
        #expect((after["storage"] as? [String: Any])?["max_storage_gb"] as? Double == 12.5)
    }

    @Test func scheduledHealthPassesFindBitRotAndAutoRepairIt() throws {
        let server = try SidecarServer(arguments: ["--schedule-interval", "0.2"])
        #expect(try WanProcess.run(["models", "ensure", "--only", "srv@1.0"], environment: server.env).status == 0)
        let blob = server.env["MODELS_ROOT"]! + "/wan22/srv@1.0/unet/w.bin"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: blob))
        bytes[4321] ^= 0x01
        chmod(blob, 0o644)
        try bytes.write(to: URL(fileURLWithPath: blob))
        #expect(try server.metric("wan_health_checks_total", ["result": "failed"]) == 0)

        let update = try server.post("/api/v1/config/update", ["health_monitoring": ["check_interval_hours": 0.0003, "auto_repair_enabled": true]],
                                     method: "PUT")
        #expect(update.status == 200, "\(update.body)")
        #expect(try eventually { (try server.metric("wan_health_checks_total", ["result": "failed"]) ?? 0) >= 1 }, "the pass found the flipped bit")
        let healed = try server.poll("/health/models/srv@1.0", timeout: 30) {
            (($0["models"] as? [String: Any])?["srv@1.0"] as? [String: Any])?["state"] as? String == "COMPLETE"
        }
        #expect(((healed["models"] as? [String: Any])?["srv@1.0"] as? [String: Any])?["state"] as? String == "COMPLETE")
        let sums = try Shell.run("/usr/bin/sha256sum", [blob])
        #expect(sums.output.hasPrefix(server.model.file("unet/w.bin").sha256), "auto repair fetched the good bytes again")
        let system = try #require(try server.get("/api/v1/models/health").json()["system_health"] as? [String: Any])
        #expect(system["last_health_pass"] is String)
        #expect(try eventually { (try server.metric("wan_health_checks_total", ["result": "ok"]) ?? 0) >= 1 }, "later passes find it intact")
    }

    @Test func scheduledGCKeepsTheCacheUnderTheThreshold() throws {
        let models = [ModelFixture(modelID: "g1@1.0", sizes: [("a.bin", 2 << 20)], seed: 71),
                      ModelFixture(modelID: "g2@1.0", sizes: [("b.bin", 2 << 20)], seed: 72)]
        let server = try SidecarServer(models: models, arguments: ["--schedule-interval", "0.2"])
        for id in ["g1@1.0", "g2@1.0"] {
            #expect(try WanProcess.run(["models", "ensure", "--only", id], environment: server.env).status == 0)
        }
        #expect(try WanProcess.run(["models", "pin", "g2@1.0"], environment: server.env).status == 0)
        let root = server.env["MODELS_ROOT"]!
        // 4 MiB cached; at most 6 MB allowed and GC from 50 %: down to 3 MB, so the unpinned model goes.
        #expect(try server.post("/api/v1/config/update", ["storage": ["max_storage_gb": 0.006, "cleanup_threshold_percent": 50]],
                                method: "PUT").status == 200)
        #expect(eventually { !FileManager.default.fileExists(atPath: root + "/wan22/g1@1.0") }, "the least recently used unpinned model was collected")
        #expect(FileManager.default.fileExists(atPath: root + "/wan22/g2@1.0/b.bin"), "pinned models stay")
        #expect((try server.metric("wan_gc_runs_total") ?? 0) >= 1)
        #expect((try server.metric("wan_gc_bytes_reclaimed_total") ?? 0) >= Double(2 << 20))
        let system = try #require(try server.get("/api/v1/models/health").json()["system_health"] as? [String: Any])
        #expect((system["gc_runs"] as? Int ?? 0) >= 1 && system["last_gc"] is String)
        // The cache-wide checks are diagnose's own.
        let apiChecks = try #require(system["checks"] as? [[String: Any]])
        let diagnose = try WanProcess.run(["models", "diagnose", "--offline", "--json"], environment: server.env)
        let cliChecks = try #require(try diagnose.json()["checks"] as? [[String: Any]])
        let apiNames = apiChecks.compactMap { $0["name"] as? String }
        #expect(Set(apiNames) == ["MODELS_ROOT", "free space", "state database", "partial downloads"], "diagnose's, without the lock probes: \(apiNames)")
        for name in apiNames {
            let api = apiChecks.first { $0["name"] as? String == name }, cli = cliChecks.first { $0["name"] as? String == name }
            #expect(api?["level"] as? String == "ok" && cli?["level"] as? String == api?["level"] as? String, "\(name): \(String(describing: api)) vs \(String(describing: cli))")
        }
    }

    /// Whether `condition` holds within `timeout` seconds (polled).
    func eventually(timeout: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return try condition()
    }
}
