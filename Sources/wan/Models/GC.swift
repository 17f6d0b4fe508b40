import ArgumentParser
import WanCache
import WanCore

/// `wan models gc`: free space.
struct GC: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove old and least recently used models to free space (pinned and in-use models are kept).",
        discussion: """
        Limits default to max_total_size / max_model_age from the config file. Blobs no model links and
        quarantined files are always removed; --aggressive also removes abandoned partial downloads and,
        over the size limit, removes the largest models first regardless of access time.
        """)

    @OptionGroup var global: GlobalOptions

    @Flag(help: "Only report what would be removed.")
    var dryRun = false

    @Flag(help: "Also remove abandoned partial downloads; evict largest first.")
    var aggressive = false

    @Option(help: ArgumentHelp("Remove models not accessed for more than this many days.", valueName: "days"))
    var maxAge: Double?

    @Option(help: ArgumentHelp("Shrink the cache to at most this size (e.g. 100GB, 500GiB).", valueName: "size"))
    var maxSize: String?

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        if let maxAge, !(0...1_000_000).contains(maxAge) {
            throw OrchestratorError.configInvalid(key: "--max-age", message: "must be between 0 and 1000000 days, found \(maxAge)")
        }
        let limit = try maxSize.map { text throws(OrchestratorError) in try ByteSize.parse(text) }
        let collector = GarbageCollector(engine: engine, maxTotalSize: limit, maxModelAge: maxAge.map { $0 * 86400 })
        let result = try collector.collect(dryRun: dryRun, aggressive: aggressive)
        if global.json { try output.emit(result) }
        let verb = dryRun ? "would remove" : "removed"
        for model in result.modelsRemoved { output.say("\(verb) \(model): \(result.reasons[model] ?? "")") }
        for model in result.modelsPreserved { output.say("kept \(model): \(result.reasons[model] ?? "")") }
        output.say(dryRun ? "reclaimable: \(ByteSize.format(result.bytesReclaimable))" : "reclaimed: \(ByteSize.format(result.bytesReclaimed))")
        for error in result.errors { output.say("error: \(error)") }
        if !result.errors.isEmpty { throw ExitCode(1) }
    }
}
