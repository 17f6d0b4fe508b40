import ArgumentParser
import WanCore

/// `wan models verify`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct Verify: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-hash downloaded models and report damaged files (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models verify")
    }
}
