import ArgumentParser
import WanCache
import WanCore

/// `wan models status`: what is on disk for each model.
struct Status: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each model's state: NOT_PRESENT, PARTIAL, VERIFYING, COMPLETE or CORRUPT.",
        discussion: "Without --model, every model of the manifest is shown in its default variant.")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only this model (name@version, optionally #variant).", valueName: "id"))
    var model: String?

    @Option(help: "The variant to report (default: each model's default variant).")
    var variant: String?

    @Flag(help: "Include every file's state (JSON: a `files` list).")
    var verbose = false

    struct Report: Encodable {
        let models: [ModelStatus]
    }

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        var statuses: [ModelStatus] = []
        for spec in try context.specs(model: model, variant: variant) {
            let status = try engine.status(spec)
            statuses.append(verbose ? status : status.withoutFiles)
        }
        if global.json {
            try output.emit(Report(models: statuses))
            return
        }
        var table = TextTable(header: ["MODEL", "VARIANT", "STATE", "PRESENT", "TOTAL", "NEEDED", "MISSING FILES"])
        for s in statuses {
            table.add([s.modelID, s.variant ?? "-", s.state.rawValue, ByteSize.format(s.bytesPresent),
                       ByteSize.format(s.bytesTotal), ByteSize.format(s.bytesNeeded), "\(s.missingFiles.count)"])
        }
        output.say(table.rendered)
        if verbose {
            for s in statuses {
                output.say("\n\(s.modelID)\(s.variant.map { "#" + $0 } ?? ""):")
                for f in s.files {
                    output.say("  \(f.state.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(ByteSize.format(f.bytesPresent))/\(ByteSize.format(f.size))  \(f.path)\(f.optional ? " (optional)" : "")")
                }
            }
        }
    }
}

extension ModelStatus {
    /// The same status without the per-file list (what `status` prints without --verbose).
    var withoutFiles: ModelStatus {
        ModelStatus(modelID: modelID, variant: variant, state: state, bytesTotal: bytesTotal, bytesPresent: bytesPresent,
                    bytesNeeded: bytesNeeded, missingFiles: missingFiles, lastVerified: lastVerified, files: [])
    }
}
