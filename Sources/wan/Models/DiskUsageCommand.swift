import ArgumentParser
import WanCache
import WanCore

/// `wan models disk-usage`: space per model and in total, shared bytes counted once.
struct DiskUsageCommand: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk-usage",
        abstract: "Show the space each model takes and the cache's total (shared files counted once).")

    @OptionGroup var global: GlobalOptions

    func execute(_ output: Output) async throws {
        let config = try global.loadConfig()
        let usage = try DiskUsage.measure(try config.resolver())
        if global.json {
            try output.emit(usage)
            return
        }
        var table = TextTable(header: ["MODEL", "FILES", "SIZE", "SHARED"])
        for m in usage.models {
            table.add([m.directory, "\(m.files)", ByteSize.format(m.bytes), ByteSize.format(m.sharedBytes)])
        }
        output.say(table.rendered)
        output.say("partial downloads: \(ByteSize.format(usage.partialBytes))")
        output.say("unlinked blobs:    \(ByteSize.format(usage.unlinkedBlobBytes))")
        output.say("total on disk:     \(ByteSize.format(usage.totalBytes)) under \(usage.modelsRoot)")
        if let fs = usage.filesystem {
            output.say("filesystem:        \(ByteSize.format(fs.availableBytes)) available of \(ByteSize.format(fs.totalBytes))")
        }
    }
}
