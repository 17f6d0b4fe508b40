import ArgumentParser
import WanCore

/// `wan models migrate`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct Migrate: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Import model files from a legacy folder without downloading (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models migrate")
    }
}
