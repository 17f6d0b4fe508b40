import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanFS

/// `wan models wait`: blocks until models reach a state (an init container's one-liner).
struct Wait: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until models are COMPLETE (or at least PARTIAL); exit 1 on timeout or when one turns CORRUPT.",
        discussion: """
        Watches the cache (or, with --mount or when MODELS_ROOT is a wanfs mountpoint, the live mount) \
        and fetches nothing itself: pair it with `wan models ensure`, the sidecar's downloads, or \
        readers of the mount. Exits 0 once every model has reached --state, 1 when --timeout passes \
        first or a model turns CORRUPT (named), 2 for a model the manifest does not know.
        """)

    enum Wanted: String, ExpressibleByArgument, CaseIterable, Encodable {
        case complete = "COMPLETE", partial = "PARTIAL"

        /// Whether `state` satisfies this wait: PARTIAL is reached once any bytes are present
        /// (PARTIAL, VERIFYING or COMPLETE).
        func isReached(by state: ModelState) -> Bool {
            switch self {
            case .complete: state == .complete
            case .partial: state == .partial || state == .verifying || state == .complete
            }
        }
    }

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("Models to wait for (name@version, optionally #variant).", valueName: "model"))
    var models: [String]

    @Option(help: "The state to wait for: COMPLETE (downloaded and verified) or PARTIAL (some bytes present).")
    var state: Wanted = .complete

    @Option(help: ArgumentHelp("Give up after this many seconds (exit 1).", valueName: "seconds"))
    var timeout: Double = 600

    @Option(help: ArgumentHelp("Seconds between looks.", valueName: "seconds"))
    var interval: Double = 1

    @Option(help: ArgumentHelp("A wanfs mountpoint: watch its live state (it needs no manifest).", valueName: "path"))
    var mount: String?

    struct Entry: Encodable {
        let modelID: String
        let variant: String?
        let state: ModelState
        let reached: Bool
        enum CodingKeys: String, CodingKey { case modelID = "model_id", variant, state, reached }
    }

    struct Report: Encodable {
        let ok: Bool
        let wanted: Wanted
        /// `reached`, `timeout` or `corrupt`.
        let outcome: String
        let waitedSeconds: Double
        let models: [Entry]
        enum CodingKeys: String, CodingKey { case ok, wanted, outcome, waitedSeconds = "waited_seconds", models }
    }

    func validate() throws {
        guard !models.isEmpty else { throw ValidationError("name at least one model to wait for") }
        guard timeout.isFinite, timeout >= 0, timeout <= 30 * 86400 else {
            throw ValidationError("--timeout must be from 0 to 2592000 seconds (30 days), not \(timeout)")
        }
        guard interval.isFinite, interval >= 0.05, interval <= 3600 else {
            throw ValidationError("--interval must be from 0.05 to 3600 seconds, not \(interval)")
        }
    }

    func execute(_ output: Output) async throws {
        let look = try watcher(output)
        let started = ContinuousClock.now
        let deadline = started + .milliseconds(Int64(timeout * 1000))
        var last: [String: ModelState] = [:]
        while true {
            let entries = try look().map { Entry(modelID: $0.modelID, variant: $0.variant, state: $0.state, reached: state.isReached(by: $0.state)) }
            for entry in entries where last[entry.key] != entry.state {
                output.say("\(entry.key): \(entry.state.rawValue)")
                last[entry.key] = entry.state
            }
            let corrupt = entries.filter { $0.state == .corrupt }
            let done = entries.allSatisfy(\.reached)
            let timedOut = ContinuousClock.now >= deadline
            if done || !corrupt.isEmpty || timedOut {
                let outcome = done ? "reached" : !corrupt.isEmpty ? "corrupt" : "timeout"
                let elapsed = ContinuousClock.now - started
                let waited = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                if global.json {
                    try output.emit(Report(ok: done, wanted: state, outcome: outcome, waitedSeconds: (waited * 1000).rounded() / 1000, models: entries))
                }
                if done { return }
                if !corrupt.isEmpty {
                    output.say("error: \(corrupt.map(\.key).joined(separator: ", ")) turned CORRUPT (`wan models verify --fix` repairs it)")
                } else {
                    let waiting = entries.filter { !$0.reached }.map { "\($0.key) (\($0.state.rawValue))" }
                    output.say("error: timed out after \(timeout) s waiting for \(state.rawValue): \(waiting.joined(separator: ", "))")
                }
                throw ExitCode(1)
            }
            try await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
        }
    }

    /// A function that reads the models' states now: from the live mount, or from the cache.
    /// A model the cache's manifest (or the answering mount) does not know is an error before
    /// the first look. With `--mount`, a mount that does not answer yet (its daemon starting or
    /// restarting) or a model it leaves out for a moment counts as not there yet, until the
    /// timeout.
    private func watcher(_ output: Output) throws -> () throws -> [ModelStatus] {
        let ids = try models.map { try ModelID(parsing: $0) }
        let path = mount ?? global.modelsRoot ?? ProcessInfo.processInfo.environment["MODELS_ROOT"]
        let first = try path.flatMap { try MountStatus.read(mountpoint: $0) }
        if let path, mount != nil || first != nil {
            if let first {
                let known = Set(first.models.map(\.modelID))
                for id in ids where !known.contains(id.base) {
                    throw OrchestratorError.modelNotFound(modelID: id.base, available: known.sorted())
                }
            } else {
                output.say("\(path) is not a wanfs mount yet: waiting for it")
            }
            return {
                let live = (try? MountStatus.read(mountpoint: path)) ?? nil
                return ids.map { id in
                    // The mount lists the default variant first.
                    let matching = live?.models.filter { $0.modelID == id.base && (id.variant == nil || $0.variant == id.variant) } ?? []
                    return matching.first ?? ModelStatus(modelID: id.base, variant: id.variant, state: .notPresent, bytesTotal: 0, bytesPresent: 0,
                                                         bytesNeeded: 0, missingFiles: [], lastVerified: nil, files: [])
                }
            }
        }
        let context = try CommandContext(global, output: output)
        let engine = try context.engine()
        let specs = try models.map { try context.registry.spec($0, variant: nil) }
        return { try specs.map { try engine.status($0) } }
    }
}

extension Wait.Entry {
    /// `name@version`, with `#variant` when there is one.
    var key: String { modelID + (variant.map { "#" + $0 } ?? "") }
}
