import ArgumentParser
import WanCore

/// `wan models ensure`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct Ensure: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "ensure",
        abstract: "Download models so they are complete and verified (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models ensure")
    }
}
