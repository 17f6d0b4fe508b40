import Foundation

/// The package's built executables (`wan`, `mount.wanfs`), as the tests run them.
public enum BuiltProducts {
    /// `name` in $WAN_BIN_DIR, else next to the test bundle, else .build/debug.
    public static func path(_ name: String) -> String {
        if let explicit = ProcessInfo.processInfo.environment["WAN_BIN_DIR"] { return explicit + "/" + name }
        var directory = Bundle.main.bundleURL
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate.path }
            directory.deleteLastPathComponent()
        }
        return TestServers.repositoryRoot + "/.build/debug/" + name
    }
}
