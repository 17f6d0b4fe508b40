import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanSystem

/// `wan models trace export|import`: move access traces between hosts.
struct TraceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trace",
        abstract: "Export or import a model's access trace (the order its loads read its bytes).",
        discussion: """
        A trace is a small JSON file naming each file by path and sha256 and the byte ranges loads \
        read, in order. Export it from a host that loaded the model, keep it beside the model at \
        its source, import it (or pass it to `wan models prefetch --trace`) on the others.
        """,
        subcommands: [Export.self, Import.self])

    struct Export: WanCommand {
        static let configuration = CommandConfiguration(abstract: "Write a model's recorded access trace (to stdout, or --output).")

        @OptionGroup var global: GlobalOptions

        @Argument(help: ArgumentHelp("The model (name@version, optionally #variant).", valueName: "model"))
        var model: String

        @Option(help: "The variant (default: the model's default variant).")
        var variant: String?

        @Option(name: .shortAndLong, help: ArgumentHelp("Write it to this file (replaced whole) instead of stdout.", valueName: "file"))
        var output: String?

        func execute(_ out: Output) async throws {
            let context = try CommandContext(global, output: out)
            let engine = try context.engine()
            let spec = try context.registry.spec(model, variant: variant)
            let data = try await Blocking.run { () throws -> Data in
                guard let trace = try engine.trace(spec) else {
                    throw OrchestratorError.configInvalid(key: "trace", message: "\(engine.modelKey(spec)) has no recorded access trace (\(engine.tracePath(spec)))")
                }
                return try trace.encoded()
            }
            guard let output else {
                FileHandle.standardOutput.write(data)
                return
            }
            try await Blocking.run {
                let target = URL(fileURLWithPath: output).standardizedFileURL.path
                try Directory.open(PathSplit.parent(target)).replaceFile(PathSplit.name(target), with: Array(data))
            }
            out.say("wrote the access trace of \(engine.modelKey(spec)) to \(output)")
            if global.json { try out.emit(["path": output]) }
        }
    }

    struct Import: WanCommand {
        static let configuration = CommandConfiguration(
            abstract: "Merge a trace file into its model's recorded trace (or replace it with --replace).",
            discussion: "The model is the one the file names; the manifest must have it. Ranges of files the manifest has with other content are dropped.")

        @OptionGroup var global: GlobalOptions

        @Argument(help: ArgumentHelp("The trace file.", valueName: "file"))
        var file: String

        @Flag(help: "Replace the recorded trace instead of merging into it.")
        var replace = false

        struct Report: Encodable {
            let modelID: String
            let variant: String?
            let path: String
            let ranges: Int
            let bytes: Int64
            let runs: Int
            let skippedFiles: [String]
            enum CodingKeys: String, CodingKey { case modelID = "model_id", variant, path, ranges, bytes, runs, skippedFiles = "skipped_files" }
        }

        func execute(_ output: Output) async throws {
            let context = try CommandContext(global, output: output)
            let engine = try context.engine()
            let (report, key) = try await Blocking.run { () throws -> (Report, String) in
                let trace = try TraceFile.read(file)
                let spec = try context.registry.spec(trace.model, variant: trace.variant)
                let resolved = try trace.resolve(against: spec)
                guard !resolved.ranges.isEmpty else {
                    throw OrchestratorError.configInvalid(key: "trace", message: "\(file) names no range of a file \(engine.modelKey(spec)) has with the same content")
                }
                let written = try engine.recordTrace(trace, for: spec, replacing: replace)
                return (Report(modelID: spec.modelID, variant: spec.variant, path: engine.tracePath(spec), ranges: written.ranges.count,
                               bytes: written.byteCount, runs: written.runs, skippedFiles: resolved.skipped), engine.modelKey(spec))
            }
            output.say("\(replace ? "replaced" : "merged into") the access trace of \(key): \(report.ranges) ranges, \(ByteSize.format(report.bytes)) (\(report.path))")
            if !report.skippedFiles.isEmpty { output.say("dropped (the manifest has other content for them): \(report.skippedFiles.joined(separator: ", "))") }
            if global.json { try output.emit(report) }
        }
    }
}
