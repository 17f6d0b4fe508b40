import ArgumentParser

/// `wan models unpin`: the reverse of `pin`.
struct Unpin: WanCommand {
    static let configuration = CommandConfiguration(abstract: "Allow a pinned model to be garbage collected again.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The model (name@version, optionally #variant).") var model: String
    @Option(help: "The variant (default: the model's default variant).") var variant: String?

    func execute(_ output: Output) async throws {
        try PinChange.apply(false, model: model, variant: variant, prefetch: false, global: global, output: output)
    }
}
