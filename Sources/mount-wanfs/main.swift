import Foundation
import Logging
import WanCore
import WanFS
import WanSystem

// mount.wanfs MODELS_ROOT MOUNTPOINT [-o manifest=PATH,verify=lazy|strict,allow_other,...] [-f] [-n] [-v]
//
// The mount(8) helper: `mount -t wanfs MODELS_ROOT MOUNTPOINT -o ...` and /etc/fstab lines
// call it. It checks everything it can, then (unless -f) forks: the parent exits 0 only once
// the mount answers, or non-zero with the reason. Exit codes: 0 mounted, 1 the mount failed,
// 2 invalid arguments, options or manifest.

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("mount.wanfs: \(message)\n".utf8))
    exit(code)
}

// The holder of a running mount's connection (started by the daemon, never by hand):
// mount.wanfs --hold MODELS_ROOT MOUNTPOINT OPTIONS, with the connection as descriptor 3.
if CommandLine.arguments.count == 5 && CommandLine.arguments[1] == "--hold" {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    let arguments = CommandLine.arguments
    CrashRecovery.hold(modelsRoot: arguments[2], mountpoint: arguments[3], options: arguments[4], logger: Logger(label: "wanfs-holder"))
}

let options: MountOptions
let mounter: Mounter
do {
    options = try MountOptions.parse(Array(CommandLine.arguments.dropFirst()))
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = options.verbose || options.foreground ? .info : .notice
        return handler
    }
    // A holder process keeps a copy of the connection and starts a new daemon if this one dies.
    mounter = try Mounter(options: options, holder: Spawn.currentExecutable)
} catch let error as any CodedError {
    fail("[\(error.code)] \(error)", code: error.code.isInvalidInput ? 2 : 1)
} catch {
    fail("\(error)", code: 1)
}

if options.foreground {
    let status = mounter.run { failure in
        if let failure { FileHandle.standardError.write(Data("mount.wanfs: \(failure)\n".utf8)) } else {
            FileHandle.standardError.write(Data("mount.wanfs: \(options.mountpoint) is ready\n".utf8))
        }
    }
    exit(status == 0 ? 0 : 1)
}

do {
    switch try Daemon.detach(logPath: mounter.logPath, keeping: mounter.descriptorsToKeep) {
    case .parent(let failure):
        if let failure { fail(failure, code: 1) }
        if options.verbose { print("mount.wanfs: \(options.modelsRoot) mounted at \(options.mountpoint)") }
        exit(0)
    case .child(let notifier):
        let status = mounter.run { notifier.report($0) }
        exit(status == 0 ? 0 : 1)
    }
} catch {
    fail("cannot start the mount process: \(error)", code: 1)
}
