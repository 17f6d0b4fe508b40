import Foundation
import HummingbirdTesting
import Testing
import WanCache
@testable import WanServe

/// /metrics: every family declared from the start, download figures from the totals the
/// state database keeps.
@Suite struct MetricsTests {
    @Test func everyFamilyIsDeclaredBeforeItsFirstSample() async throws {
        try await SidecarFixture().test { client in
            let text = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            for (family, type) in [("model_downloads_total", "counter"), ("model_errors_total", "counter"),
                                   ("model_storage_bytes_used", "gauge"), ("model_download_duration_seconds", "histogram"),
                                   ("wan_read_latency_seconds", "histogram")] {
                #expect(text.contains("# TYPE \(family) \(type)\n"), "\(family) declared: \(text)")
                #expect(text.contains("# HELP \(family) "), "\(family) has its help")
            }
            #expect(!text.contains("model_downloads_total{"), "no download yet, no sample")
            #expect(text.contains("model_download_duration_seconds_count 0\n"))
        }
    }

    @Test func downloadFiguresComeFromTheTotals() async throws {
        let fixture = try SidecarFixture()
        let state = try #require(try fixture.sidecar.engine.state(create: true))
        for (outcome, seconds) in [("completed", 0.5), ("completed", 90.0), ("corrupt", 2.0), ("cancelled", 1.0)] {
            try state.recordDownload(.init(model: "app@1.0", path: "w.bin", sha256: String(repeating: "b", count: 64), source: nil,
                                           bytes: 1, duration: seconds, outcome: outcome))
        }
        try await fixture.test { client in
            let text = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            let lines = Set(text.split(separator: "\n").map(String.init))
            #expect(lines.contains(#"model_downloads_total{model="app@1.0",status="completed"} 2"#), "\(text)")
            #expect(lines.contains(#"model_downloads_total{model="app@1.0",status="failed"} 1"#))
            #expect(lines.contains(#"model_downloads_total{model="app@1.0",status="cancelled"} 1"#))
            #expect(lines.contains(#"model_errors_total{type="CHECKSUM_FAIL",model="app@1.0"} 1"#), "a cancel is no error")
            #expect(lines.contains(#"model_download_duration_seconds_bucket{le="1.0"} 1"#))
            #expect(lines.contains(#"model_download_duration_seconds_bucket{le="60.0"} 1"#))
            #expect(lines.contains(#"model_download_duration_seconds_bucket{le="300.0"} 2"#))
            #expect(lines.contains("model_download_duration_seconds_count 2"))
            #expect(lines.contains("model_download_duration_seconds_sum 90.5"))
        }
    }
}
