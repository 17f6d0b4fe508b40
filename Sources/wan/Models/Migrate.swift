import ArgumentParser
import WanCache
import WanCore
import WanSystem

/// `wan models migrate analyze|plan|execute PATH`: import a legacy folder without downloading.
struct Migrate: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find files of manifest models in a legacy folder (by size, then sha256) and import them without any download.",
        discussion: """
        analyze  list the legacy files that are model files, and which models they would complete
        plan     also say what execute will copy and link
        execute  copy the content into the cache (verifying it) and link it into each model; the folder is left unchanged
        """)

    enum Step: String, ExpressibleByArgument, CaseIterable {
        case analyze, plan, execute
    }

    @OptionGroup var global: GlobalOptions
    @Argument(help: "analyze, plan or execute.") var step: Step
    @Argument(help: "The legacy folder.") var path: String

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let importer = LegacyImporter(engine: try context.engine())
        switch step {
        case .analyze, .plan:
            let analysis = try await Blocking.run { try importer.analyze(path) }
            if global.json { try output.emit(analysis) }
            output.say("scanned \(analysis.scannedFiles) files (\(ByteSize.format(analysis.scannedBytes))), hashed \(analysis.hashedFiles), matched \(analysis.matches.count)")
            for match in analysis.matches {
                let action = step == .plan ? (match.cached ? "link " : "copy+link ") : ""
                output.say("  \(action)\(match.legacyPath) -> \(match.targets.joined(separator: ", "))")
            }
            if step == .plan { output.say("would copy \(ByteSize.format(analysis.bytesToImport)); \(analysis.alreadyCached) already cached") }
            output.say("models complete afterwards: \(analysis.completeModels.isEmpty ? "none" : analysis.completeModels.joined(separator: ", "))")
        case .execute:
            let execution = try await Blocking.run { try importer.execute(path) }
            if global.json { try output.emit(execution) }
            output.say("imported \(execution.imported.count) files, made \(execution.linked) links")
            for error in execution.errors { output.say("error: \(error)") }
            if !execution.errors.isEmpty { throw ExitCode(1) }
        }
    }
}
