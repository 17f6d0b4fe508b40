import Foundation
import Testing
import WanTestSupport

/// The sidecar's download manager through its API, with nginx on 127.0.0.1 as the origin
/// (its access log counts the bytes served).
@Suite(.serialized) struct DownloadAPITests {
    static let manage = "/api/v1/models/download/manage"

    /// One 24 MiB weight file and a config.
    static func bigModel(_ id: String, mib: Int = 24, seed: UInt64 = 5) -> ModelFixture {
        ModelFixture(modelID: id, sizes: [("model_index.json", 400), ("transformer/w.safetensors", mib << 20)], seed: seed)
    }

    func progress(_ server: SidecarServer, _ id: String) throws -> [String: Any] {
        try server.get("/api/v1/models/download/progress/\(id)").json()
    }

    func originBytes(_ server: SidecarServer) throws -> Int64 {
        try TestServers.nginxBytes(containing: "/\(server.prefix ?? "-")/")
    }

    /// nginx logs a request when it ends; an aborted one a moment after the client goes.
    func settledOriginBytes(_ server: SidecarServer) throws -> Int64 {
        var last = try originBytes(server)
        for _ in 0..<20 {
            Thread.sleep(forTimeInterval: 0.25)
            let now = try originBytes(server)
            if now == last { return now }
            last = now
        }
        return last
    }

    @Test func aDownloadRisesToCompleteAndPauseKeepsItsBytesForResume() throws {
        let server = try SidecarServer(models: [Self.bigModel("pr@1.0")], overHTTP: true)
        let size = Int64(server.model.totalSize)
        let started = try server.post(Self.manage, ["model_id": "pr@1.0", "action": "start", "bandwidth_limit_mbps": 48])
        #expect(started.status == 200, "\(started.body)")
        let answer = try started.json()
        #expect(answer["new_status"] as? String == "DOWNLOADING" && (answer["download_id"] as? String)?.hasPrefix("dl_") == true)
        #expect(answer["current_status"] as? String == "downloading")
        #expect(try server.post(Self.manage, ["model_id": "pr@1.0", "action": "start"]).status == 409, "one download per model")

        let running = try server.poll("/api/v1/models/download/progress/pr@1.0") { ($0["progress_percent"] as? Double ?? 0) >= 30 }
        #expect(running["status"] as? String == "DOWNLOADING")
        #expect((running["speed_mbps"] as? Double ?? 0) > 0 && running["eta_seconds"] is Int, "\(running)")
        #expect(running["can_pause"] as? Bool == true && running["can_resume"] as? Bool == false)
        let detail = try server.get("/api/v1/models/status/detailed/pr@1.0").json()
        #expect(detail["availability_status"] as? String == "downloading" && detail["can_pause_download"] as? Bool == true)

        let paused = try server.post(Self.manage, ["model_id": "pr@1.0", "action": "pause"])
        #expect(try paused.status == 200 && (paused.json()["new_status"] as? String) == "PAUSED", "\(paused.body)")
        let atPause = try settledOriginBytes(server)
        let keptMB = try progress(server, "pr@1.0")["downloaded_mb"] as? Double ?? 0
        Thread.sleep(forTimeInterval: 1.5)
        #expect(try originBytes(server) == atPause, "a paused download moves no bytes")
        let still = try progress(server, "pr@1.0")
        #expect(still["status"] as? String == "PAUSED" && still["can_resume"] as? Bool == true)
        #expect(still["downloaded_mb"] as? Double == keptMB && keptMB > 0 && keptMB < Double(size) / 1e6)
        #expect(try server.get("/api/v1/models/status/detailed/pr@1.0").json()["availability_status"] as? String == "paused")
        #expect(try server.post(Self.manage, ["model_id": "pr@1.0", "action": "pause"]).status == 409, "not running")

        #expect(try server.post(Self.manage, ["model_id": "pr@1.0", "action": "bandwidth", "bandwidth_limit_mbps": 0]).status == 200)
        let resumed = try server.post(Self.manage, ["model_id": "pr@1.0", "action": "resume"])
        #expect(resumed.status == 200, "\(resumed.body)")
        let done = try server.poll("/api/v1/models/download/progress/pr@1.0") { $0["status"] as? String == "COMPLETED" }
        #expect(done["status"] as? String == "COMPLETED" && done["progress_percent"] as? Double == 100, "\(done)")
        let fetched = try settledOriginBytes(server)
        // What arrived before the pause is kept: the resume fetches only the rest. (nginx
        // counts what it wrote into the sockets, and with a slow reader the loopback buffers
        // of 8 connections hold megabytes the pause discarded, so only the resume's share is
        // a fair measure.)
        #expect(fetched - atPause <= size - Int64(keptMB * 1e6) + (1 << 20), "resume refetched kept bytes: \(fetched - atPause)")
        #expect(try server.get("/api/v1/models/status/detailed/pr@1.0").json()["availability_status"] as? String == "available")
        let sums = try Shell.run("/usr/bin/sha256sum", [server.env["MODELS_ROOT"]! + "/wan22/pr@1.0/transformer/w.safetensors"])
        #expect(sums.output.hasPrefix(server.model.file("transformer/w.safetensors").sha256))
        let again = try server.post(Self.manage, ["model_id": "pr@1.0", "action": "start"]).json()
        #expect(again["new_status"] as? String == "COMPLETED", "starting a complete model fetches nothing")
    }

    @Test func aPausedDownloadGivesItsFilesUpSoAnotherProcessCanFinishThem() throws {
        // One connection: when the pause comes, one job runs and the rest wait in the queue;
        // the dropped jobs must not keep the file's lock.
        let scratch = try Scratch("wan-serve-config")
        let config = try scratch.write("config.toml", "max_connections_per_source = 1\n")
        let server = try SidecarServer(models: [Self.bigModel("hand@1.0", mib: 40, seed: 9)], overHTTP: true, environment: ["WAN_CONFIG": config])
        #expect(try server.post(Self.manage, ["model_id": "hand@1.0", "action": "start", "bandwidth_limit_mbps": 64]).status == 200)
        try server.poll("/api/v1/models/download/progress/hand@1.0") { ($0["progress_percent"] as? Double ?? 0) >= 10 }
        #expect(try server.post(Self.manage, ["model_id": "hand@1.0", "action": "pause"]).status == 200)
        let ensure = try Shell.run("/usr/bin/timeout", ["60", WanProcess.binary.path, "models", "ensure", "--only", "hand@1.0"],
                                   environment: server.env.merging(["PATH": "/usr/bin:/bin"]) { a, _ in a })
        #expect(ensure.status == 0, "the CLI takes over the paused download: \(ensure.output)")
        let resumed = try server.post(Self.manage, ["model_id": "hand@1.0", "action": "resume"])
        #expect(resumed.status == 200)
        let done = try server.poll("/api/v1/models/download/progress/hand@1.0") { $0["status"] as? String == "COMPLETED" }
        #expect(done["status"] as? String == "COMPLETED", "\(done)")
    }

    @Test func aBandwidthLimitHoldsWithinTwentyPercent() throws {
        let server = try SidecarServer(models: [Self.bigModel("bw@1.0", mib: 16, seed: 6)], overHTTP: true)
        let mbps = 32.0   // 4 MB/s: 16 MiB in about 4.2 s
        let begin = Date()
        #expect(try server.post(Self.manage, ["model_id": "bw@1.0", "action": "start", "bandwidth_limit_mbps": mbps]).status == 200)
        let done = try server.poll("/api/v1/models/download/progress/bw@1.0", timeout: 60) { $0["status"] as? String == "COMPLETED" }
        let elapsed = Date().timeIntervalSince(begin)
        #expect(done["status"] as? String == "COMPLETED")
        let rate = Double(server.model.totalSize) * 8 / 1e6 / elapsed
        #expect(rate >= mbps * 0.8 && rate <= mbps * 1.2, "measured \(rate) Mbps for a \(mbps) Mbps cap (\(elapsed) s)")
    }

    @Test func cancelStopsTheTraffic() throws {
        let server = try SidecarServer(models: [Self.bigModel("cx@1.0", seed: 7)], overHTTP: true)
        #expect(try server.post(Self.manage, ["model_id": "cx@1.0", "action": "start", "bandwidth_limit_mbps": 40]).status == 200)
        try server.poll("/api/v1/models/download/progress/cx@1.0") { ($0["progress_percent"] as? Double ?? 0) >= 10 }
        let cancelled = try server.post(Self.manage, ["model_id": "cx@1.0", "action": "cancel"])
        #expect(try cancelled.status == 200 && (cancelled.json()["new_status"] as? String) == "CANCELLED", "\(cancelled.body)")
        let atCancel = try settledOriginBytes(server)
        Thread.sleep(forTimeInterval: 2)
        #expect(try originBytes(server) == atCancel, "no byte moves after cancel")
        #expect(atCancel < Int64(server.model.totalSize))
        let after = try progress(server, "cx@1.0")
        #expect(after["status"] as? String == "CANCELLED" && after["can_resume"] as? Bool == false && after["can_cancel"] as? Bool == false)
        #expect(try server.post(Self.manage, ["model_id": "cx@1.0", "action": "resume"]).status == 409)
        #expect(try server.get("/api/v1/models/download/active").json()["total_active"] as? Int == 0)
    }

    @Test func theQueueRunsByPriorityWithinTheConcurrencyLimitAndPagesItsList() throws {
        let models = (1...4).map { Self.bigModel("q\($0)@1.0", mib: 8, seed: UInt64(10 + $0)) }
        let scratch = try Scratch("wan-serve-config")
        let config = try scratch.write("config.toml", "max_concurrent_downloads = 1\n")
        let server = try SidecarServer(models: models, overHTTP: true, environment: ["WAN_CONFIG": config])
        // q1 takes the only slot (slowly); the others queue by priority, then by arrival.
        #expect(try server.post(Self.manage, ["model_id": "q1@1.0", "action": "start", "bandwidth_limit_mbps": 8]).status == 200)
        #expect(try server.post(Self.manage, ["model_id": "q2@1.0", "action": "start", "priority": "low"]).status == 200)
        #expect(try server.post(Self.manage, ["model_id": "q3@1.0", "action": "start"]).status == 200)
        #expect(try server.post(Self.manage, ["model_id": "q4@1.0", "action": "start", "priority": "critical"]).status == 200)
        let active = try server.get("/api/v1/models/download/active").json()
        let items = try #require(active["active_downloads"] as? [[String: Any]])
        #expect(active["total_active"] as? Int == 4 && active["pagination"] == nil)
        #expect(items.map { $0["model_id"] as? String ?? "" } == ["q4@1.0", "q3@1.0", "q2@1.0", "q1@1.0"], "\(items)")
        #expect(items.prefix(3).map { $0["queue_position"] as? Int ?? 0 } == [1, 2, 3])
        #expect(items[3]["status"] as? String == "DOWNLOADING" && items[0]["status"] as? String == "QUEUED")

        // Priority can change while queued.
        #expect(try server.post(Self.manage, ["model_id": "q2@1.0", "action": "priority", "priority": "high"]).status == 200)
        #expect(try progress(server, "q2@1.0")["status"] as? String == "QUEUED")
        let reordered = try #require(try server.get("/api/v1/models/download/active").json()["active_downloads"] as? [[String: Any]])
        #expect(reordered.prefix(2).map { $0["model_id"] as? String ?? "" } == ["q4@1.0", "q2@1.0"])

        // Pagination: bounds, sorting, and bad values.
        let page = try server.get("/api/v1/models/download/active?page=2&limit=3&sort=model_id&order=desc").json()
        let pagination = try #require(page["pagination"] as? [String: Any])
        #expect(pagination["total"] as? Int == 4 && pagination["pages"] as? Int == 2)
        #expect(pagination["has_next"] as? Bool == false && pagination["has_prev"] as? Bool == true)
        #expect((page["active_downloads"] as? [[String: Any]])?.map { $0["model_id"] as? String ?? "" } == ["q1@1.0"])
        let clamped = try server.get("/api/v1/models/download/active?limit=1000").json()
        #expect((clamped["pagination"] as? [String: Any])?["limit"] as? Int == 100)
        for bad in ["limit=0", "page=0", "page=x", "order=sideways", "sort=no_such_field"] {
            let reply = try server.get("/api/v1/models/download/active?\(bad)")
            #expect(reply.status == 422, "\(bad): \(reply.body)")
            #expect(reply.errorCode == "VALIDATION_ERROR")
        }

        // Once q1 is paused, the next by priority runs.
        #expect(try server.post(Self.manage, ["model_id": "q1@1.0", "action": "pause"]).status == 200)
        let next = try server.poll("/api/v1/models/download/progress/q4@1.0") { $0["status"] as? String != "QUEUED" }
        #expect(["DOWNLOADING", "COMPLETED"].contains(next["status"] as? String ?? ""), "\(next)")
        for id in ["q2@1.0", "q3@1.0", "q4@1.0"] {
            let finished = try server.poll("/api/v1/models/download/progress/\(id)", timeout: 60) { $0["status"] as? String == "COMPLETED" }
            #expect(finished["status"] as? String == "COMPLETED", "\(id): \(finished)")
        }
    }

    @Test func badRequestsGetTheEnvelopeWithTheFieldNamed() throws {
        let server = try SidecarServer()

        var reply = try server.get(Self.manage, post: "not json")
        #expect(reply.status == 400 && reply.errorCode == "BAD_REQUEST")
        reply = try server.post(Self.manage, ["action": "start"])
        #expect(reply.status == 422 && reply.errorField == "model_id", "\(reply.body)")
        reply = try server.post(Self.manage, ["model_id": "srv@1.0", "action": "explode"])
        #expect(reply.status == 422 && reply.errorField == "action")
        #expect((reply.error["message"] as? String)?.contains("start, pause, resume, cancel, priority, bandwidth") == true)
        reply = try server.post(Self.manage, ["model_id": "srv@1.0", "action": "start", "max_retries": "three"])
        #expect(reply.status == 422 && reply.errorField == "max_retries")
        reply = try server.post(Self.manage, ["model_id": "srv@1.0", "action": "start", "priority": "urgent"])
        #expect(reply.status == 422 && reply.errorField == "priority")
        reply = try server.post(Self.manage, ["model_id": "srv@1.0", "action": "start", "bandwidth_limit_mbps": -1])
        #expect(reply.status == 422)
        reply = try server.post(Self.manage, ["model_id": "nope@1.0", "action": "start"])
        #expect(reply.status == 404 && reply.errorCode == "MODEL_NOT_FOUND")
        reply = try server.post(Self.manage, ["model_id": "srv@1.0", "action": "pause"])
        #expect(reply.status == 409 && reply.errorCode == "CONFLICT")
        #expect(try server.get("/api/v1/models/download/progress/srv@1.0").status == 404, "never downloaded")
        #expect(try server.get("/api/v1/models/download/progress/nope@1.0").status == 404)
    }
}
