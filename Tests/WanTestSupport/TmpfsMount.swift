import Foundation

/// A small tmpfs, for disk-full tests. Needs root (CI runs as root); fails loudly otherwise.
public enum TmpfsMount {
    public static func mount(at path: String, megabytes: Int) throws {
        let result = try Shell.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
        guard result.status == 0 else {
            throw TestEnvironmentError("cannot mount a \(megabytes) MiB tmpfs at \(path) (root needed): \(result.output)")
        }
    }

    public static func unmount(_ path: String) {
        _ = try? Shell.run("/bin/umount", ["-l", path])
    }
}

public struct TestEnvironmentError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a command and collects its combined output.
public enum Shell {
    public struct Result: Sendable {
        public let status: Int32
        public let output: String
    }

    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
    }
}
