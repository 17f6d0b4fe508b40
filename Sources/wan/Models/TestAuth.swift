import ArgumentParser
import WanCore

/// `wan models test-auth`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct TestAuth: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-auth",
        abstract: "Check credentials against every source (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models test-auth")
    }
}
