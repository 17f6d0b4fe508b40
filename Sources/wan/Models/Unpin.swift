import ArgumentParser
import WanCore

/// `wan models unpin`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct Unpin: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "unpin",
        abstract: "Allow a pinned model to be garbage collected again (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models unpin")
    }
}
