import ArgumentParser

/// `wan models ...`: the model orchestrator commands (seed 000/001).
struct Models: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Inspect, fetch, verify and clean up the models of a manifest.",
        subcommands: [
            Status.self, ValidateManifest.self, DiskUsageCommand.self,
            Ensure.self, Verify.self, GC.self, Pin.self, Unpin.self,
            TestSources.self, TestAuth.self, Diagnose.self, Migrate.self, ManifestCommand.self, Wait.self, Reload.self,
            Prefetch.self, TraceCommand.self,
        ])
}
