import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanSystem

/// `wan models prefetch`: fetch what a model's loads read, in the order they read it.
struct Prefetch: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch the bytes a model's recorded loads read, in the order they read them (its access trace).",
        discussion: """
        A mount records each model's cold load as an access trace (MODELS_ROOT/.state/traces/); this \
        replays it into the cache with parallel range requests, so the next load finds its bytes \
        there. --trace replays a trace file instead (one exported on another host: `wan models trace \
        export`). Bytes already cached are not fetched again; --budget caps what is fetched. Exits 1 \
        when some range could not be fetched, 2 for a trace that does not fit the model.
        """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The model (name@version, optionally #variant).", valueName: "model"))
    var model: String

    @Option(help: "The variant (default: the model's default variant).")
    var variant: String?

    @Option(help: ArgumentHelp("Replay this trace file instead of the recorded one.", valueName: "file"))
    var trace: String?

    @Option(help: ArgumentHelp("Fetch at most this much (e.g. 4GiB).", valueName: "size"))
    var budget: String?

    @Option(help: "Ranges fetched at once.")
    var streams = 4

    func validate() throws {
        guard (1...64).contains(streams) else { throw ValidationError("--streams must be between 1 and 64") }
    }

    struct Report: Encodable {
        let modelID: String
        let variant: String?
        let ok: Bool
        let trace: String
        let outcome: TraceReplay.Outcome
        enum CodingKeys: String, CodingKey { case modelID = "model_id", variant, ok, trace, outcome }
    }

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        let spec = try context.registry.spec(model, variant: variant)
        var chosen = TraceReplay.Options()
        chosen.streams = streams
        if let budget {
            do { chosen.budget = try ByteSize.parse(budget) } catch {
                throw OrchestratorError.configInvalid(key: "--budget", message: "'\(budget)' is not a size (e.g. 4GiB)")
            }
        }
        let (replayed, source) = try await Blocking.run { () throws -> (AccessTrace, String) in
            if let trace { return (try TraceFile.read(trace), trace) }
            guard let recorded = try engine.trace(spec) else {
                throw OrchestratorError.configInvalid(
                    key: "trace", message: "\(engine.modelKey(spec)) has no recorded access trace (\(engine.tracePath(spec))): load it once through a mount, or give one with --trace")
            }
            return (recorded, engine.tracePath(spec))
        }
        let options = chosen
        let bar = ProgressBar(label: engine.modelKey(spec))
        let outcome = try await Blocking.run { try TraceReplay.run(replayed, for: spec, engine: engine, options: options) { bar.update($0, of: $1) } }
        bar.finish()
        let ok = outcome.failures.isEmpty
        output.say("\(engine.modelKey(spec)): fetched \(ByteSize.format(outcome.bytesFetched)) of \(ByteSize.format(outcome.bytesRequested)) missing "
            + "(\(ByteSize.format(outcome.bytesInTrace)) in \(outcome.ranges) ranges, \(ByteSize.format(outcome.bytesAlreadyPresent)) already cached) "
            + "in \(String(format: "%.2f", outcome.seconds)) s" + (outcome.budgetReached ? "; stopped at the budget" : ""))
        if !outcome.skippedFiles.isEmpty {
            output.say("skipped (the manifest has other content for them): \(outcome.skippedFiles.joined(separator: ", "))")
        }
        for failure in outcome.failures { output.say("failed: \(failure)") }
        if global.json {
            try output.emit(Report(modelID: spec.modelID, variant: spec.variant, ok: ok, trace: source, outcome: outcome))
        }
        if !ok { throw ExitCode(1) }
    }
}

/// A trace file given on the command line (not under MODELS_ROOT).
enum TraceFile {
    static func read(_ path: String) throws -> AccessTrace {
        guard let info = try FileSystem.info(path), info.kind == .regular else {
            throw OrchestratorError.configInvalid(key: "trace", message: "\(path) is not a file")
        }
        guard info.size <= Int64(AccessTrace.maxFileBytes) else {
            throw OrchestratorError.configInvalid(key: "trace", message: "\(path) is \(info.size) bytes (a trace is at most \(AccessTrace.maxFileBytes))")
        }
        return try AccessTrace.decode(try Data(contentsOf: URL(fileURLWithPath: path)), source: path)
    }
}
