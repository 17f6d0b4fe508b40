import ArgumentParser
import WanCore

/// `wan models gc`: not built yet; it exits 2 with NOT_IMPLEMENTED, never a fake success.
struct GC: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove least recently used and old models to free space (not implemented yet)")

    @OptionGroup var global: GlobalOptions
    @Argument(parsing: .allUnrecognized, help: .hidden) var rest: [String] = []

    func execute(_ output: Output) async throws {
        throw OrchestratorError.notImplemented("wan models gc")
    }
}
