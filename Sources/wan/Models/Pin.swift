import ArgumentParser
import Foundation
import WanCache
import WanCore

/// `wan models pin` / `unpin`: protect a model from garbage collection.
struct Pin: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Protect a model from garbage collection (with --prefetch, also download it now).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The model (name@version, optionally #variant).") var model: String
    @Option(help: "The variant (default: the model's default variant).") var variant: String?
    @Flag(help: "Also download the model now.") var prefetch = false

    func execute(_ output: Output) async throws {
        try PinChange.apply(true, model: model, variant: variant, prefetch: prefetch, global: global, output: output)
    }
}

enum PinChange {
    struct Report: Encodable {
        let model: String
        let pinned: Bool
    }

    static func apply(_ pinned: Bool, model: String, variant: String?, prefetch: Bool, global: GlobalOptions, output: Output) throws {
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        let spec = try context.registry.spec(model, variant: variant)
        let key = engine.modelKey(spec)
        try engine.state()?.setPinned(pinned, model: key)
        if prefetch { try engine.ensure(spec) }
        if global.json { try output.emit(Report(model: key, pinned: pinned)) }
        output.say("\(key): \(pinned ? "pinned" : "unpinned")")
    }
}
