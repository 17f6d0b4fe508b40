import ArgumentParser
import Foundation
import Glibc
import WanCore
import WanFS

/// `wan models reload --mount M`: has a running mount read its manifest again (SIGHUP).
struct Reload: WanCommand {
    static let configuration = CommandConfiguration(
        abstract: "Have a running mount read its manifest again, without unmounting.",
        discussion: """
        Sends SIGHUP to the mount's daemon and waits for its answer. New models appear, removed \
        ones leave the listings (files already open keep working), and a file whose sha256 changed \
        is a new file for new opens. A manifest that does not load is refused: the mount keeps the \
        one it has, and this command exits 1 with the reason.
        """)

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("The wanfs mountpoint (default: MODELS_ROOT when it is one).", valueName: "path"))
    var mount: String?

    @Option(help: ArgumentHelp("Seconds to wait for the mount's answer.", valueName: "seconds"))
    var timeout: Double = 30

    struct Report: Encodable {
        let ok: Bool
        let mountpoint: String
        let models: Int?
        let error: String?
    }

    func validate() throws {
        guard timeout.isFinite, timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be from 0 to 3600 seconds, not \(timeout)") }
    }

    func execute(_ output: Output) async throws {
        guard let path = mount ?? global.modelsRoot ?? ProcessInfo.processInfo.environment["MODELS_ROOT"] else {
            throw OrchestratorError.configInvalid(key: "--mount", message: "name the wanfs mountpoint to reload")
        }
        guard let before = try MountStatus.read(mountpoint: path) else {
            throw OrchestratorError.configInvalid(key: "--mount", message: "\(path) is not a wanfs mount (it has no .wanfs/status.json)")
        }
        guard let seen = before.mount.reloads else {
            throw OrchestratorError.configInvalid(key: "--mount", message: "the daemon of \(path) (pid \(before.mount.pid)) cannot reload its manifest: remount it with this version")
        }
        guard kill(before.mount.pid, SIGHUP) == 0 else {
            let reason = errno == EPERM ? "not allowed to signal it (run as the user that mounted it, or root)" : String(cString: strerror(errno))
            throw OrchestratorError.configInvalid(key: "--mount", message: "cannot signal the daemon of \(path) (pid \(before.mount.pid)): \(reason)")
        }
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            guard let record = try MountStatus.read(mountpoint: path)?.mount.reloads, record.total > seen.total else { continue }
            let ok = record.refused == seen.refused
            if global.json { try output.emit(Report(ok: ok, mountpoint: path, models: ok ? record.models : nil, error: ok ? nil : record.lastError)) }
            guard ok else {
                output.say("error: \(path) refused the manifest and keeps the one it had: \(record.lastError ?? "no reason given")")
                throw ExitCode(1)
            }
            output.say("\(path): manifest reloaded (\(record.models.map(String.init) ?? "?") models)")
            return
        }
        output.say("error: \(path) did not answer within \(timeout) s (its log, MODELS_ROOT/.state/mount.log, may say why)")
        throw ExitCode(1)
    }
}
