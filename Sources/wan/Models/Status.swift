import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanFS

/// `wan models status`: what is on disk for each model.
struct Status: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show each model's state: NOT_PRESENT, PARTIAL, VERIFYING, COMPLETE or CORRUPT.",
        discussion: """
        Without --model, every model of the manifest is shown in its default variant. With --mount \
        (or when MODELS_ROOT is a wanfs mountpoint) the live mount answers, fetches in flight included; \
        it needs no manifest.
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Only this model (name@version, optionally #variant).", valueName: "id"))
    var model: String?

    @Option(help: "The variant to report (default: each model's default variant).")
    var variant: String?

    @Flag(help: "Include every file's state (JSON: a `files` list).")
    var verbose = false

    @Option(help: ArgumentHelp("A wanfs mountpoint: report its live state, fetches in flight included.", valueName: "path"))
    var mount: String?

    struct Report: Encodable {
        let models: [ModelStatus]
        var mount: MountDescription?
        var fetches: [MountStatus.Fetch]?
    }

    func execute(_ output: Output) async throws {
        if let live = try liveMount() {
            try report(live, output)
            return
        }
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        var statuses: [ModelStatus] = []
        for spec in try context.specs(model: model, variant: variant) {
            var status = try engine.status(spec)
            status.trace = engine.traceSummary(spec)
            statuses.append(verbose ? status : status.withoutFiles)
        }
        try show(Report(models: statuses), output)
    }

    /// The live mount's status: `--mount`'s, or MODELS_ROOT's when it is a wanfs mountpoint.
    private func liveMount() throws -> MountStatus? {
        guard let path = mount ?? global.modelsRoot ?? ProcessInfo.processInfo.environment["MODELS_ROOT"] else { return nil }
        if let status = try MountStatus.read(mountpoint: path) { return status }
        if mount != nil {
            throw OrchestratorError.configInvalid(key: "--mount", message: "\(path) is not a wanfs mount (it has no .wanfs/status.json)")
        }
        return nil
    }

    private func report(_ live: MountStatus, _ output: Output) throws {
        var models = live.models
        if let model {
            let id = try ModelID(parsing: model, variant: variant)
            guard models.contains(where: { $0.modelID == id.base }) else {
                throw OrchestratorError.modelNotFound(modelID: id.base, available: Array(Set(models.map(\.modelID))).sorted())
            }
            models = models.filter { $0.modelID == id.base && (id.variant == nil || $0.variant == id.variant) }
        } else if let variant {
            models = models.filter { $0.variant == variant }
        }
        if !verbose { models = models.map(\.withoutFiles) }
        try show(Report(models: models, mount: live.mount, fetches: live.fetches), output)
    }

    private func show(_ report: Report, _ output: Output) throws {
        if global.json {
            try output.emit(report)
            return
        }
        let statuses = report.models
        var table = TextTable(header: ["MODEL", "VARIANT", "STATE", "PRESENT", "TOTAL", "NEEDED", "MISSING FILES"])
        for s in statuses {
            table.add([s.modelID, s.variant ?? "-", s.state.rawValue, ByteSize.format(s.bytesPresent),
                       ByteSize.format(s.bytesTotal), ByteSize.format(s.bytesNeeded), "\(s.missingFiles.count)"])
        }
        output.say(table.rendered)
        for s in statuses {
            guard let trace = s.trace else { continue }
            output.say("access trace of \(s.modelID)\(s.variant.map { "#" + $0 } ?? ""): \(ByteSize.format(trace.bytes)) in \(trace.ranges) ranges "
                + "from \(trace.runs) load(s), \(ByteSize.format(trace.bytesPresent)) of it cached")
        }
        if verbose {
            for s in statuses {
                output.say("\n\(s.modelID)\(s.variant.map { "#" + $0 } ?? ""):")
                for f in s.files {
                    output.say("  \(f.state.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)) \(ByteSize.format(f.bytesPresent))/\(ByteSize.format(f.size))  \(f.path)\(f.optional ? " (optional)" : "")")
                }
            }
        }
        if let mount = report.mount {
            let passthrough = mount.passthrough.map { $0 ? ", complete files read by the kernel from their blobs" : ", every read through the daemon" } ?? ""
            let directIO = mount.directIO == true ? ", files being fetched read with direct I/O" : ""
            output.say("\nmounted at \(mount.mountpoint) (pid \(mount.pid), verify=\(mount.verify)\(passthrough)\(directIO)), cache \(mount.modelsRoot)")
            if let reloads = mount.reloads, reloads.total > 0 {
                output.say("manifest reloaded \(reloads.applied) time(s)" + (reloads.lastError.map { "; the last reload was refused (the mount keeps the manifest it had): \($0)" } ?? ""))
            }
            for fetch in report.fetches ?? [] {
                output.say("  fetching \(fetch.model)/\(fetch.path): \(ByteSize.format(fetch.bytesPresent))/\(ByteSize.format(fetch.size)), \(fetch.inFlightBlocks) block(s) in flight\(fetch.source.map { " from " + $0 } ?? "")")
            }
        }
    }
}

extension ModelStatus {
    /// The same status without the per-file list (what `status` prints without --verbose).
    var withoutFiles: ModelStatus {
        var status = ModelStatus(modelID: modelID, variant: variant, state: state, bytesTotal: bytesTotal, bytesPresent: bytesPresent,
                                 bytesNeeded: bytesNeeded, missingFiles: missingFiles, lastVerified: lastVerified, files: [])
        status.trace = trace
        return status
    }
}
