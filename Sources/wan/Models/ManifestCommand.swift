import ArgumentParser
import WanCore

/// `wan models manifest`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct ManifestCommand: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest",
        abstract: "Write a manifest entry from a folder or a source (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models manifest")
    }
}
