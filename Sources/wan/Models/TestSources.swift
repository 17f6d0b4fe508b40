import ArgumentParser
import WanCore
import WanSources
import WanSystem

/// `wan models test-sources`: can every source be reached, and does it have the files?
struct TestSources: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-sources",
        abstract: "Check that every source of every model is reachable and serves its files, with latency.",
        discussion: """
        Each source is asked for the size of the model's first file (a HEAD or stat, never a download).
        Exits 0 when every source answered, 1 when any failed.
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only this model's sources.", valueName: "id"))
    var model: String?

    struct ModelReport: Encodable {
        let modelID: String
        let sources: [SourceCheck]
        enum CodingKeys: String, CodingKey {
            case modelID = "model_id"
            case sources
        }
    }

    struct Report: Encodable {
        let ok: Bool
        let models: [ModelReport]
    }

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let factory = SourceFactory(config: context.config, manifestDirectory: context.registry.manifestDirectory)
        var reports: [ModelReport] = []
        for spec in try context.specs(model: model, variant: nil) {
            reports.append(ModelReport(modelID: spec.modelID, sources: await SourceProbe.check(spec.sources, factory: factory, sample: spec.files.first?.path)))
        }
        let ok = reports.allSatisfy { $0.sources.allSatisfy { $0.errorCode == nil } }
        if global.json { try output.emit(Report(ok: ok, models: reports)) }
        var table = TextTable(header: ["MODEL", "SOURCE", "REACHABLE", "AUTH", "LATENCY", "DETAIL"])
        for report in reports {
            for check in report.sources {
                table.add([report.modelID, check.source, check.reachable ? "yes" : "NO", SourceProbe.authText(check.authenticated),
                           String(format: "%.1f ms", check.latencyMS), check.errorCode.map { "[\($0)] \(check.detail)" } ?? check.detail])
            }
        }
        output.say(table.rendered)
        if !ok { throw ExitCode(1) }
    }
}

/// Probing shared by `test-sources` and `test-auth`.
enum SourceProbe {
    /// Probes `sources` in parallel (each on its own thread).
    static func check(_ sources: [SourceURL], factory: SourceFactory, sample: String?) async -> [SourceCheck] {
        await Blocking.all(sources.map { url in
            { @Sendable () -> SourceCheck in
                do throws(SourceError) {
                    return try factory.backend(for: url).probe(samplePath: sample)
                } catch {
                    return SourceCheck(source: url.raw, scheme: url.scheme, reachable: false, authenticated: nil, latencyMS: 0,
                                       detail: error.message, errorCode: error.code.rawValue)
                }
            }
        })
    }

    static func authText(_ authenticated: Bool?) -> String {
        switch authenticated {
        case true?: "ok"
        case false?: "FAILED"
        case nil: "-"
        }
    }
}
