import ArgumentParser
import Foundation
import WanCore
import WanFS

/// `wan mount MOUNTPOINT`: the mount in the foreground (as `mount.wanfs -f`).
struct MountCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount MODELS_ROOT at MOUNTPOINT as a lazy, verified view of the manifest, in the foreground.",
        discussion: """
        Serves until `umount MOUNTPOINT` (or fusermount3 -u) or SIGTERM/SIGINT; partial downloads \
        are kept. Options are mount.wanfs's -o options (manifest=, verify=lazy|strict, allow_other, \
        prefetch=, timeout=, retries=, hydrate=auto|lazy|open, trace=auto|record|off, trace_budget=, stripe=on|off, cache_max=, \
        max_read=, config=, debug, takeover). \
        For a mount in the background (boot, fstab, systemd) use `mount -t wanfs` or mount.wanfs.
        """)

    @Argument(help: "An empty directory to mount on.")
    var mountpoint: String

    @Option(name: .customLong("models-root"), help: ArgumentHelp("The cache root. Default: $MODELS_ROOT.", valueName: "path"))
    var modelsRoot: String?

    @Option(help: ArgumentHelp("The manifest. Default: $WAN_MODELS_MANIFEST, else ./models.toml, else $MODELS_ROOT/models.toml.", valueName: "path"))
    var manifest: String?

    @Option(name: .short, help: ArgumentHelp("Mount options, comma separated (may repeat).", valueName: "options"))
    var o: [String] = []

    @Flag(help: "Take over the daemon serving MOUNTPOINT (an upgrade or restart without unmounting): its open files keep working; options not given are its own.")
    var takeover = false

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let root = modelsRoot ?? environment["MODELS_ROOT"], !root.isEmpty else {
            throw ValidationError("no MODELS_ROOT: pass --models-root or set MODELS_ROOT")
        }
        var arguments = [root, mountpoint, "-f"]
        if let manifest { arguments += ["-o", "manifest=\(manifest)"] }
        for list in o { arguments += ["-o", list] }
        if takeover { arguments += ["-o", "takeover"] }
        let mounter: Mounter
        do {
            mounter = try Mounter(options: try MountOptions.parse(arguments), environment: environment)
        } catch let error as any CodedError {
            Output(json: false).fail(error)
            throw ExitCode(error.code.isInvalidInput ? 2 : 1)
        }
        // The FUSE loop blocks its thread: keep it off Swift concurrency's small pool.
        let status: Int32 = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(returning: mounter.run { failure in
                    let message = failure.map { "wan mount: \($0)" } ?? "wan mount: \(mounter.options.mountpoint) is ready (umount it, or press Ctrl-C, to stop)"
                    FileHandle.standardError.write(Data((message + "\n").utf8))
                })
            }
        }
        if status != 0 { throw ExitCode(1) }
    }
}
