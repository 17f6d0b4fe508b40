import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanSystem

/// `wan models ensure`: download models so they are complete and verified.
struct Ensure: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download models so they are complete, verified and linked under MODELS_ROOT/wan22/.",
        discussion: """
        Files already cached (by this or another model) are not fetched again; interrupted downloads resume.
        Exits 1 if any model could not be ensured (the error code says why: NO_SPACE, CHECKSUM_FAIL, ...).
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Ensure only this model (name@version, optionally #variant).", valueName: "id"))
    var only: String?

    @Flag(help: "Ensure every model of the manifest.")
    var all = false

    @Option(help: "The variant (default: each model's default variant).")
    var variant: String?

    @Flag(help: "Discard what is cached for the model(s) and download again.")
    var force = false

    func validate() throws {
        guard (only == nil) != !all else { throw ValidationError("give exactly one of --only ID or --all") }
    }

    struct Outcome: Encodable {
        let modelID: String
        let variant: String?
        let ok: Bool
        let path: String?
        let bytesDownloaded: Int64
        let seconds: Double
        let error: ErrorReport?
        enum CodingKeys: String, CodingKey {
            case modelID = "model_id", variant, ok, path
            case bytesDownloaded = "bytes_downloaded", seconds, error
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(modelID, forKey: .modelID)
            try c.encode(variant, forKey: .variant)
            try c.encode(ok, forKey: .ok)
            try c.encode(path, forKey: .path)
            try c.encode(bytesDownloaded, forKey: .bytesDownloaded)
            try c.encode((seconds * 1000).rounded() / 1000, forKey: .seconds)
            try c.encode(error, forKey: .error)
        }
    }

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        var outcomes: [Outcome] = []
        for spec in try context.specs(model: only, variant: variant) {
            let started = Date()
            let needed = (try? engine.estimateDownloadSize(spec)) ?? 0
            let bar = ProgressBar(label: engine.modelKey(spec))
            do {
                let path = try await Blocking.run { try engine.ensure(spec, force: force) { bar.update($0, of: $1) } }
                bar.finish()
                output.say("\(engine.modelKey(spec)): COMPLETE at \(path)")
                outcomes.append(Outcome(modelID: spec.modelID, variant: spec.variant, ok: true, path: path,
                                        bytesDownloaded: force ? spec.totalSize : needed, seconds: Date().timeIntervalSince(started), error: nil))
            } catch {
                bar.finish()
                let report = ErrorReport(error)
                output.say("\(engine.modelKey(spec)): FAILED [\(report.code)] \(report.message)")
                outcomes.append(Outcome(modelID: spec.modelID, variant: spec.variant, ok: false, path: nil, bytesDownloaded: 0,
                                        seconds: Date().timeIntervalSince(started), error: report))
            }
        }
        let ok = outcomes.allSatisfy(\.ok)
        if global.json { try output.emit(Results(ok: ok, results: outcomes)) }
        if !ok { throw ExitCode(1) }
    }
}

/// `{"ok": ..., "results": [...]}`, the shape of every batch command's JSON.
struct Results<Item: Encodable>: Encodable {
    let ok: Bool
    let results: [Item]
}

/// An error as JSON: its code and message.
struct ErrorReport: Encodable {
    let code: String
    let message: String

    init(_ error: any Error) {
        if let coded = error as? any CodedError {
            code = coded.code.rawValue
            message = coded.description
        } else {
            code = ErrorCode.ioError.rawValue
            message = "\(error)"
        }
    }
}
