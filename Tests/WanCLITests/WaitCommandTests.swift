import Foundation
import Testing
import WanTestSupport

/// `wan models wait` as an init container runs it: against the cache, while another process
/// downloads; a timeout, a corrupt model and an unknown one each end it with their exit code.
@Suite struct WaitCommandTests {
    @Test func waitsForAnEnsureInAnotherProcessAndFailsOnTimeoutCorruptionOrUnknownModels() throws {
        let model = ModelFixture(modelID: "wait@1.0", sizes: [("config.json", 300), ("w.bin", 3 << 20)], seed: 91)
        let s = try CacheCommandTests.setup(model, sources: ["local://src"])
        try model.write(to: s.dir.path + "/src")

        let early = try s.run("models", "wait", "wait@1.0", "--timeout", "0.3", "--json")
        #expect(early.status == 1)
        #expect(try early.json()["outcome"] as? String == "timeout" && early.stderr.contains("wait@1.0 (NOT_PRESENT)"), "\(early.stderr)")

        // A waiter started first returns once another process has made the model complete.
        let waiter = Process()
        waiter.executableURL = WanProcess.binary
        waiter.arguments = ["models", "wait", "wait@1.0", "--timeout", "60", "--interval", "0.1", "--json"]
        waiter.environment = s.env.merging(["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]) { a, _ in a }
        let out = Pipe()
        waiter.standardOutput = out
        waiter.standardError = FileHandle.nullDevice
        try waiter.run()
        Thread.sleep(forTimeInterval: 0.5)
        #expect(waiter.isRunning, "it waits while the model is missing")
        #expect(try s.run("models", "ensure", "--only", "wait@1.0").status == 0)
        let data = out.fileHandleForReading.readDataToEndOfFile()
        waiter.waitUntilExit()
        #expect(waiter.terminationStatus == 0)
        let report = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(report["outcome"] as? String == "reached" && report["ok"] as? Bool == true)
        #expect((report["models"] as? [[String: Any]])?.first?["state"] as? String == "COMPLETE")
        #expect(try s.run("models", "wait", "wait@1.0", "--state", "PARTIAL", "--timeout", "0").status == 0, "complete is past partial")

        // Bit rot found by a verification: the wait ends at once, naming the model.
        let file = s.root + "/wan22/wait@1.0/w.bin"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        bytes[12345] ^= 0x01
        chmod(file, 0o644)
        try bytes.write(to: URL(fileURLWithPath: file))
        #expect(try s.run("models", "verify", "--model", "wait@1.0").status != 0)
        let started = Date()
        let corrupt = try s.run("models", "wait", "wait@1.0", "--timeout", "30", "--json")
        #expect(corrupt.status == 1 && Date().timeIntervalSince(started) < 10)
        #expect(try corrupt.json()["outcome"] as? String == "corrupt" && corrupt.stderr.contains("wait@1.0 turned CORRUPT"), "\(corrupt.stderr)")

        let unknown = try s.run("models", "wait", "nope@9.9", "--timeout", "1")
        #expect(unknown.status == 2 && unknown.stderr.contains("nope@9.9"), "\(unknown.stderr)")
        let negative = try s.run("models", "wait", "wait@1.0", "--timeout=-5")
        #expect(negative.status == 2 && negative.stderr.contains("--timeout"), "\(negative.stderr)")
        let absurd = try s.run("models", "wait", "wait@1.0", "--timeout", "1e300")
        #expect(absurd.status == 2 && absurd.stderr.contains("--timeout"), "no overflow trap: \(absurd.stderr)")
    }
}
