import Foundation
import Testing
import WanTestSupport

/// Analytics, fallback suggestions and the request queue of the sidecar, from real uses.
@Suite(.serialized) struct SidecarInsightsTests {
    static func utcDay(_ date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: date)
    }

    @Test func analyticsCountTheUsesRecordedByEnsureAndAdviseOnCleanup() throws {
        let models = [ModelFixture(modelID: "a@1.0", sizes: [("a.bin", 1 << 20)], seed: 51),
                      ModelFixture(modelID: "b@1.0", sizes: [("b.bin", 2 << 20)], seed: 52)]
        let server = try SidecarServer(models: models)
        let hour = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date()).hour ?? -1
        for id in ["a@1.0", "a@1.0", "b@1.0"] {
            #expect(try WanProcess.run(["models", "ensure", "--only", id], environment: server.env).status == 0)
        }
        let report = try server.get("/api/v1/models/analytics").json()
        let system = try #require(report["system_analytics"] as? [String: Any])
        #expect(system["total_uses"] as? Int == 3 && system["active_models"] as? Int == 2, "\(system)")
        #expect(system["most_used_model"] as? String == "a@1.0")
        let a = try #require((report["model_analytics"] as? [String: Any])?["a@1.0"] as? [String: Any])
        #expect(a["total_uses"] as? Int == 2 && a["average_generation_time"] is NSNull, "no generation runs here: null")
        let days = try #require(a["last_30_days_usage"] as? [[String: Any]])
        #expect(days.count == 30 && days.last?["date"] as? String == Self.utcDay() && days.last?["uses"] as? Int == 2, "\(days.suffix(2))")
        #expect(days.dropLast().allSatisfy { $0["uses"] as? Int == 0 })
        #expect(a["peak_usage_hours"] as? [Int] == [hour])
        let summary = try #require(report["summary"] as? [String: Any])
        #expect(summary["least_used_model"] as? String == "b@1.0" && summary["total_generations"] as? Int == 3)
        #expect((report["time_period"] as? [String: Any])?["days"] as? Int == 30)

        let week = try server.get("/api/v1/models/analytics/b@1.0?period=week").json()
        #expect((week["time_period"] as? [String: Any])?["days"] as? Int == 7)
        #expect((week["model_analytics"] as? [String: Any])?.keys.sorted() == ["b@1.0"])
        #expect(((week["models"] as? [String: Any])?["b@1.0"] as? [String: Any])?["last_30_days_usage"].map { ($0 as? [Any])?.count } == 7)
        let past = try server.get("/api/v1/models/analytics?start_date=2020-01-01&end_date=2020-01-31").json()
        #expect((past["system_analytics"] as? [String: Any])?["total_uses"] as? Int == 0, "nothing was used in 2020")
        #expect(try server.get("/api/v1/models/analytics?period=decade").errorField == "period")
        #expect(try server.get("/api/v1/models/analytics?time_period_days=0").errorField == "time_period_days")
        #expect(try server.get("/api/v1/models/analytics/nope@1.0").status == 404)

        // Cleanup advice: with min_unused_days=0 every idle model could go, except a pinned one.
        #expect(try WanProcess.run(["models", "pin", "b@1.0"], environment: server.env).status == 0)
        let advice = try server.get("/api/v1/models/analytics/cleanup?min_unused_days=0&sort=model_id").json()
        let recommendations = try #require(advice["recommendations"] as? [[String: Any]])
        #expect(recommendations.map { $0["action"] as? String ?? "" } == ["safe_to_remove", "keep"], "\(recommendations)")
        #expect(recommendations[0]["usage_count"] as? Int == 2 && recommendations[1]["reason"] as? String == "pinned")
        #expect(abs((advice["potential_savings_gb"] as? Double ?? 0) - (recommendations[0]["size_mb"] as? Double ?? -1) / 1000) < 1e-9)
        let paged = try server.get("/api/v1/models/analytics/cleanup?min_unused_days=0&limit=1&page=2&sort=model_id").json()
        #expect((paged["recommendations"] as? [[String: Any]])?.first?["model_id"] as? String == "b@1.0")
        #expect((paged["pagination"] as? [String: Any])?["has_prev"] as? Bool == true)
        let relaxed = try server.get("/api/v1/models/analytics/cleanup").json()
        #expect((relaxed["recommendations"] as? [[String: Any]])?.allSatisfy { $0["action"] as? String == "keep" } == true,
                "both were used today: nothing to remove at 30 days")

        let performance = try #require(try server.get("/api/v1/models/analytics/performance").json()["system_performance"] as? [String: Any])
        #expect(performance["download_success_rate"] as? Double == 1)
        #expect((performance["average_download_speed_mbps"] as? Double ?? 0) > 0)
        #expect(performance["health_check_success_rate"] is NSNull, "no verification ran yet")
    }

    static let wan = [
        ModelFixture(modelID: "t2v-A14B@2.2.0", sizes: [("w.bin", 3 << 20)], seed: 61),
        ModelFixture(modelID: "i2v-A14B@2.2.0", sizes: [("w.bin", 3 << 20)], seed: 62),
        ModelFixture(modelID: "ti2v-5B@2.2.0", sizes: [("w.bin", 1 << 20)], seed: 63),
    ]
    static let caps = [
        "t2v-A14B@2.2.0": #"resolution_caps = ["1280x720", "1920x1080"]"#,
        "i2v-A14B@2.2.0": #"resolution_caps = ["1280x720", "1920x1080"]"#,
        "ti2v-5B@2.2.0": #"resolution_caps = ["1280x720"]"#,
    ]

    @Test func fallbackSuggestsWhatIsAvailableAndCompatible() throws {
        let server = try SidecarServer(models: Self.wan, manifestExtra: Self.caps)
        #expect(try WanProcess.run(["models", "ensure", "--only", "ti2v-5B@2.2.0"], environment: server.env).status == 0)

        let reply = try server.post("/api/v1/models/fallback/suggest", ["requested_model": "t2v-A14B@2.2.0", "quality": "medium"])
        #expect(reply.status == 200, "\(reply.body)")
        let answer = try reply.json()
        let suggestions = try #require(answer["suggestions"] as? [[String: Any]])
        #expect(suggestions.map { $0["suggested_model"] as? String ?? "" } == ["ti2v-5B@2.2.0", "i2v-A14B@2.2.0"])
        #expect(suggestions[0]["availability_status"] as? String == "available" && suggestions[1]["availability_status"] as? String == "missing")
        #expect((suggestions[0]["compatibility_score"] as? Double ?? 0) > (suggestions[1]["compatibility_score"] as? Double ?? 1))
        #expect(suggestions[0]["estimated_quality_difference"] as? String == "lower" && (suggestions[0]["performance_difference"] as? Double ?? 0) > 0,
                "a third of the size: faster, lower quality")
        #expect((answer["alternative_suggestion"] as? [String: Any])?["suggested_model"] as? String == "ti2v-5B@2.2.0")
        let strategy = try #require(answer["fallback_strategy"] as? [String: Any])
        #expect(strategy["strategy_type"] as? String == "alternative_model" && strategy["alternative_model"] as? String == "ti2v-5B@2.2.0")

        // Seed 002's nested form; a 1080p request rules out the 720p-only model's resolution points.
        let nested = try server.post("/api/v1/models/fallback/suggest",
                                     ["requested_model": "t2v-A14B@2.2.0", "requirements": ["quality": "high", "speed": "medium", "resolution": "1920x1080"]]).json()
        let scores = Dictionary(uniqueKeysWithValues: (nested["suggestions"] as? [[String: Any]] ?? []).map {
            ($0["suggested_model"] as? String ?? "", $0["compatibility_score"] as? Double ?? -1)
        })
        #expect((scores["ti2v-5B@2.2.0"] ?? 1) < (suggestions[0]["compatibility_score"] as? Double ?? 0), "\(scores)")

        let itself = try server.post("/api/v1/models/fallback/suggest", ["requested_model": "ti2v-5B@2.2.0"]).json()
        #expect((itself["fallback_strategy"] as? [String: Any])?["alternative_model"] as? String == "ti2v-5B@2.2.0")
        #expect(itself["wait_time_estimate"] as? Double == 0)
        #expect(try server.post("/api/v1/models/fallback/suggest", ["requested_model": "nope@1.0"]).status == 404)
        #expect(try server.post("/api/v1/models/fallback/suggest", ["requested_model": "t2v-A14B@2.2.0", "quality": "ultra"]).errorField == "quality")
        #expect(try server.post("/api/v1/models/fallback/suggest", ["quality": "high"]).errorField == "requested_model")
    }

    @Test func aQueuedRequestStartsTheDownloadAndIsServedWhenTheModelIsComplete() throws {
        let server = try SidecarServer(models: Self.wan, manifestExtra: Self.caps)
        let queued = try server.post("/api/v1/models/fallback/queue",
                                     ["model_id": "t2v-A14B@2.2.0", "priority": "high", "request": ["prompt": "a cat", "parameters": ["steps": 4]]])
        #expect(queued.status == 200, "\(queued.body)")
        let answer = try queued.json()
        let id = try #require(answer["queue_id"] as? String)
        #expect(id.hasPrefix("queue_") && answer["position"] as? Int == 1 && answer["estimated_start_time"] is String)
        let entry = try server.poll("/api/v1/models/fallback/queue/\(id)") { $0["status"] as? String == "ready" }
        #expect(entry["status"] as? String == "ready" && entry["served_at"] is String, "\(entry)")
        #expect(try server.get("/api/v1/models/status/detailed/t2v-A14B@2.2.0").json()["is_available"] as? Bool == true)

        // A model whose source is gone never completes: its entry expires after its wait.
        try FileManager.default.removeItem(atPath: server.dir.path + "/src/i2v-A14B@2.2.0")
        let doomed = try server.post("/api/v1/models/fallback/queue", ["model_id": "i2v-A14B@2.2.0", "max_wait_time_minutes": 0.02]).json()
        let doomedID = try #require(doomed["queue_id"] as? String)
        let expired = try server.poll("/api/v1/models/fallback/queue/\(doomedID)", timeout: 10) { $0["status"] as? String == "expired" }
        #expect(expired["status"] as? String == "expired" && expired["position"] is NSNull)
        #expect(try server.get("/api/v1/models/fallback/queue/queue_000000000000").status == 404)
        #expect(try server.post("/api/v1/models/fallback/queue", ["model_id": "t2v-A14B@2.2.0", "priority": "asap"]).errorField == "priority")
    }

    @Test func seed002sPythonSDKWorksAsWritten() throws {
        let server = try SidecarServer(models: Self.wan, manifestExtra: Self.caps)
        #expect(try WanProcess.run(["models", "ensure", "--only", "ti2v-5B@2.2.0"], environment: server.env).status == 0)
        let run = try Shell.run("/usr/bin/env", ["python3", TestServers.repositoryRoot + "/Tests/clients/sdk_002.py", server.base, "t2v-A14B@2.2.0"])
        #expect(run.status == 0, "\(run.output)")
        let lines = run.output.split(separator: "\n").map(String.init)
        #expect(lines.prefix(3) == ["Model available: False", "Download started: True", "Suggested alternative: ti2v-5B@2.2.0"], "\(lines)")
        let summary = try #require((try? JSONSerialization.jsonObject(with: Data((lines.last ?? "").utf8))) as? [String: Any])
        #expect(["DOWNLOADING", "COMPLETED", "QUEUED"].contains(summary["progress_status"] as? String ?? ""), "\(summary)")
        #expect(summary["models"] as? [String] == ["i2v-A14B@2.2.0", "t2v-A14B@2.2.0", "ti2v-5B@2.2.0"])
        #expect(summary["analytics_days"] as? Int == 7)
        let done = try server.poll("/api/v1/models/download/progress/t2v-A14B@2.2.0") { $0["status"] as? String == "COMPLETED" }
        #expect(done["status"] as? String == "COMPLETED", "the download the SDK started finishes")
    }
}
