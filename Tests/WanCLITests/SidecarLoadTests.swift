import Foundation
import Testing
import WanTestSupport

/// The sidecar under load, as a shared host sees it: 200 models of 20 files in the manifest,
/// 20 of them cached; 64 clients on the heavy endpoints (`status/detailed`, `storage`,
/// `/metrics`, `analytics`) for 20 s (`WAN_LOAD_SECONDS`) while a prober asks `/health/models`
/// every 50 ms. Every answer is a 200, and the probe's p99 stays within 20× its idle p99.
/// `WAN_LOAD_REPORT=FILE` keeps the figures (docs/benchmarks.md).
@Suite struct SidecarLoadTests {
    @Test func theProbeStaysQuickWhileHeavyEndpointsAreHammered() throws {
        let environment = ProcessInfo.processInfo.environment
        let seconds = Double(environment["WAN_LOAD_SECONDS"] ?? "") ?? 20
        let models = (0..<200).map { index in
            ModelFixture(modelID: "load\(index)@1.0", sizes: (0..<20).map { ("part\($0).bin", 256) }, seed: UInt64(index + 1))
        }
        let server = try SidecarServer(models: models)
        for model in models.prefix(20) {
            let ensure = try WanProcess.run(["models", "ensure", "--only", model.modelID], environment: server.env)
            #expect(ensure.status == 0, "\(ensure.stderr)")
        }
        let run = try Shell.run("/usr/bin/env", ["python3", TestServers.repositoryRoot + "/Tests/clients/sidecar_load.py", server.base,
                                                 String(seconds), "64", "/api/v1/models/status/detailed", "/api/v1/models/storage",
                                                 "/metrics", "/api/v1/models/analytics"])
        #expect(run.status == 0, "\(run.output)")
        let line = try #require(run.output.split(separator: "\n").last.map(String.init))
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(run.output)")
        print("sidecar load: \(line)")
        if let path = environment["WAN_LOAD_REPORT"] { try line.write(toFile: path, atomically: true, encoding: .utf8) }
        let statuses = try #require(report["statuses"] as? [String: Int])
        #expect(Set(statuses.keys).isSubset(of: ["200", "probe 200"]), "every answer is a 200: \(statuses)")
        #expect((statuses["200"] ?? 0) > 0 && (statuses["probe 200"] ?? 0) > 0)
        let idle = try #require(report["idle_p99_ms"] as? Double), loaded = try #require(report["loaded_p99_ms"] as? Double)
        #expect(loaded <= 20 * idle, "the probe's p99 went from \(idle) ms idle to \(loaded) ms under load")
        #expect(server.process.isRunning, "the sidecar survived")
    }
}
