import ArgumentParser
import Foundation
import WanCache
import WanCore

/// Options every `wan models` command takes.
struct GlobalOptions: ParsableArguments {
    @Flag(help: "Print the result as JSON on stdout (human text stays on stderr).")
    var json = false

    @Option(help: ArgumentHelp("The manifest (models.toml). Default: $WAN_MODELS_MANIFEST, else ./models.toml, else $MODELS_ROOT/models.toml.", valueName: "path"))
    var manifest: String?

    @Option(name: .customLong("models-root"), help: ArgumentHelp("The cache root. Default: $MODELS_ROOT.", valueName: "path"))
    var modelsRoot: String?

    @Option(help: ArgumentHelp("A config file (TOML). Default: $WAN_CONFIG.", valueName: "path"))
    var config: String?

    /// The configuration from defaults, the config file, the environment and these flags.
    func loadConfig() throws(OrchestratorError) -> OrchestratorConfig {
        try OrchestratorConfig.load(environment: ProcessInfo.processInfo.environment, configPath: config,
                                    modelsRoot: modelsRoot, manifestPath: manifest)
    }
}

/// A `wan` subcommand: runs `execute`, and turns a thrown ``CodedError`` into a message
/// on stderr (plus `{"error": ...}` on stdout with `--json`) and exit code 1 or 2.
protocol WanCommand: AsyncParsableCommand {
    var global: GlobalOptions { get }
    func execute(_ output: Output) async throws
}

extension WanCommand {
    func run() async throws {
        let output = Output(json: global.json)
        do {
            try await execute(output)
        } catch let error as any CodedError {
            output.fail(error)
            throw ExitCode(error.code.isInvalidInput ? 2 : 1)
        }
    }
}

/// Loaded state most commands need: configuration and a valid manifest.
struct CommandContext {
    let config: OrchestratorConfig
    let registry: ModelRegistry

    init(_ global: GlobalOptions, output: Output) throws {
        config = try global.loadConfig()
        output.secrets = config.credentials.secretValues
        registry = try ModelRegistry(manifestPath: config.manifestPath)
    }

    /// The cache engine over MODELS_ROOT (needs MODELS_ROOT).
    func engine() throws -> CacheEngine {
        try CacheEngine(config: config, registry: registry)
    }

    /// The specs a command selected: one model (`ID` or `ID#variant`, or `--variant`), or every
    /// model's default variant.
    func specs(model: String?, variant: String?) throws -> [ModelSpec] {
        if let model { return [try registry.spec(model, variant: variant)] }
        return try registry.listModels().map { id throws(OrchestratorError) in try registry.spec(id, variant: variant) }
    }
}
