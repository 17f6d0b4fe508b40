import ArgumentParser
import WanCore

/// `wan models diagnose`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct Diagnose: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "diagnose",
        abstract: "Check configuration, paths, permissions, space, sources and locks (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models diagnose")
    }
}
