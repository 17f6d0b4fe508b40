import Foundation
import Testing
import WanTestSupport

/// Runs the built `wan` executable the way a user or script would.
struct WanProcess {
    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String

        /// stdout parsed as JSON.
        func json() throws -> [String: Any] {
            let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8))
            return try #require(object as? [String: Any], "stdout is not a JSON object: \(stdout)")
        }
    }

    /// The `wan` binary: $WAN_BIN, else the built product (see ``BuiltProducts``).
    static var binary: URL {
        if let explicit = ProcessInfo.processInfo.environment["WAN_BIN"] { return URL(fileURLWithPath: explicit) }
        return URL(fileURLWithPath: BuiltProducts.path("wan"))
    }

    /// Runs `wan args...` with exactly `environment` (plus PATH) and waits for it.
    static func run(_ args: [String], environment: [String: String] = [:], cwd: String? = nil) throws -> Result {
        let process = Process()
        process.executableURL = binary
        process.arguments = args
        var env = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"]
        env.merge(environment) { _, new in new }
        process.environment = env
        if let cwd { process.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes before waiting so a large output cannot block the child.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }
}
