import ArgumentParser
import WanCore

/// `wan models test-sources`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct TestSources: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-sources",
        abstract: "Check that every source is reachable, with latency (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models test-sources")
    }
}
