import Foundation
import Testing
import WanTestSupport

/// The real `huggingface_hub` client downloads through the Hub fixture and through olah, so
/// both stay faithful to the Hub that wanfs's HFStore is tested against.
@Suite struct HubClientFidelityTests {
    @Test func huggingfaceHubDownloadsThroughBothFixtures() throws {
        var env = ProcessInfo.processInfo.environment
        env.merge(try TestServers.environment()) { _, new in new }
        let script = TestServers.repositoryRoot + "/testenv/verify.py"
        // The test environment's own Python (it has huggingface_hub; maybe a private venv).
        let python = env["WAN_TEST_PYTHON"] ?? "python3"
        let result = try Shell.run("/usr/bin/env", [python, script, "huggingface_hub", "client errors", "tree pagination"], environment: env)
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("0 failed"), "\(result.output)")
        #expect(result.output.contains("PASS hf fixture: huggingface_hub public + gated + snapshot"))
        #expect(result.output.contains("PASS olah front: huggingface_hub download + snapshot"))
        #expect(result.output.contains("GatedRepoError 401"))
    }
}
