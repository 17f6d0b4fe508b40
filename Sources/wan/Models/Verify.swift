import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanSystem

/// `wan models verify`: re-hash what is on disk.
struct Verify: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash downloaded models and report damaged or missing files.",
        discussion: "With --fix, damaged files are removed (every link to them) and downloaded again. Exits 1 if any model is not intact.")

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Verify only this model.", valueName: "id"))
    var model: String?

    @Flag(help: "Verify every model of the manifest.")
    var all = false

    @Option(help: "The variant (default: each model's default variant).")
    var variant: String?

    @Flag(help: "Re-download damaged files.")
    var fix = false

    func validate() throws {
        guard (model == nil) != !all else { throw ValidationError("give exactly one of --model ID or --all") }
    }

    struct Outcome: Encodable {
        let modelID: String
        let variant: String?
        let result: VerificationResult
        let fixed: Bool
        /// With --fix, the repair's steps (integrity_check, quarantine, relink, partial_redownload / full_redownload).
        let actions: [String]?
        let error: ErrorReport?
        enum CodingKeys: String, CodingKey { case modelID = "model_id", variant, result, fixed, actions, error }
    }

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        var outcomes: [Outcome] = []
        for spec in try context.specs(model: model, variant: variant) {
            let key = engine.modelKey(spec)
            do {
                var result: VerificationResult
                var fixed = false
                var actions: [String]?
                if fix {
                    // The sidecar's repair, fetching what is missing here and now.
                    let report = try await Blocking.run { try engine.repair(spec, mode: .fetch) }
                    result = report.after ?? report.found
                    fixed = !report.found.verified && report.intact
                    actions = report.actions
                } else {
                    result = try await Blocking.run { try engine.verify(spec) }
                }
                output.say("\(key): \(result.verified ? "OK" : "DAMAGED") (\(result.verifiedFiles.count) verified, \(result.failedFiles.count) failed, \(result.missingFiles.count) missing)\(fixed ? ", fixed" : "")")
                for line in result.errors { output.say("  \(line)") }
                outcomes.append(Outcome(modelID: spec.modelID, variant: spec.variant, result: result, fixed: fixed, actions: actions, error: nil))
            } catch {
                let report = ErrorReport(error)
                output.say("\(key): FAILED [\(report.code)] \(report.message)")
                outcomes.append(Outcome(modelID: spec.modelID, variant: spec.variant, result: VerificationResult(), fixed: false, actions: nil, error: report))
            }
        }
        let ok = outcomes.allSatisfy { $0.result.verified }
        if global.json { try output.emit(Results(ok: ok, results: outcomes)) }
        if !ok { throw ExitCode(1) }
    }
}
