import ArgumentParser
import Foundation

/// `wan`: the wanfs command line.
struct Wan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wan",
        abstract: "wanfs: a lazy, verified model filesystem and its tools.",
        discussion: """
        Exit codes: 0 success, 1 the operation failed, 2 usage error or invalid input.
        With --json, results (and errors) are printed as JSON on stdout; human text goes to stderr.
        """,
        version: WanVersion.current,
        subcommands: [Models.self, MountCommand.self, ServeCommand.self])
}

enum WanVersion {
    static let current = "0.1.0"
}

@main
enum Main {
    static func main() async {
        do {
            var command = try Wan.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            // ArgumentParser reports usage errors as 64 (EX_USAGE); our contract says 2.
            let code = Wan.exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((Wan.fullMessage(for: error) + "\n").utf8))
                Wan.exit(withError: ExitCode(2))
            }
            Wan.exit(withError: error)
        }
    }
}
