import ArgumentParser
import WanCore

/// `wan models validate-manifest`: check every rule and list every problem.
struct ValidateManifest: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate-manifest",
        abstract: "Check the manifest against every rule and list all problems.",
        discussion: "Exits 0 when the manifest is valid, 2 when it is not (or cannot be read).")

    @OptionGroup var global: GlobalOptions

    struct Report: Encodable {
        let valid: Bool
        let manifest: String
        let models: [String]
        let errors: [ManifestIssue]
    }

    func execute(_ output: Output) async throws {
        let config = try global.loadConfig()
        let registry = try ModelRegistry.inspect(manifestPath: config.manifestPath)
        let issues = registry.validateManifest()
        if global.json {
            try output.emit(Report(valid: issues.isEmpty, manifest: registry.manifestPath,
                                   models: registry.listModels(), errors: issues))
        }
        if issues.isEmpty {
            output.say("\(registry.manifestPath): valid, \(registry.listModels().count) model(s)")
            return
        }
        for issue in issues { output.say("error: \(issue)") }
        output.say("\(registry.manifestPath): \(issues.count) error(s)")
        throw ExitCode(2)
    }
}
