import ArgumentParser
import WanCore

/// `wan models pin`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct Pin: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "pin",
        abstract: "Protect a model from garbage collection (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models pin")
    }
}
