import ArgumentParser
import WanCore
import WanSources

/// `wan models test-auth`: do the configured credentials work where they are needed?
struct TestAuth: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "test-auth",
        abstract: "Check the configured credentials (HF_TOKEN, AWS keys, HTTP headers) against every source that uses them.",
        discussion: "Secret values are never printed, only whether they are set. Exits 1 when any source rejects its credentials.")

    @OptionGroup var global: GlobalOptions

    struct Report: Encodable {
        let ok: Bool
        let credentials: [String: String]
        let sources: [SourceCheck]
    }

    func execute(_ output: Output) async throws {
        let context = try CommandContext(global, output: output)
        let config = context.config
        let credentials = [
            "HF_TOKEN": config.credentials.hfToken == nil ? "unset" : "set",
            "AWS_ACCESS_KEY_ID": config.credentials.awsAccessKeyID == nil ? "unset" : "set",
            "AWS_SECRET_ACCESS_KEY": config.credentials.awsSecretAccessKey == nil ? "unset" : "set",
            "AWS_SESSION_TOKEN": config.credentials.awsSessionToken == nil ? "unset" : "set",
            "http_headers": config.httpHeaders.isEmpty ? "none" : config.httpHeaders.keys.sorted().joined(separator: ","),
        ]
        // One probe per distinct source that can involve credentials, with a file it should have.
        var seen = Set<String>()
        var targets: [(SourceURL, String?)] = []
        for spec in context.registry.manifest.models {
            for url in spec.sources where url.scheme != "local" && seen.insert(url.raw).inserted {
                targets.append((url, spec.files.first?.path))
            }
        }
        let factory = SourceFactory(config: config, manifestDirectory: context.registry.manifestDirectory)
        var checks: [SourceCheck] = []
        for (url, sample) in targets {
            checks += await SourceProbe.check([url], factory: factory, sample: sample)
        }
        let ok = !checks.contains { $0.authenticated == false }
        if global.json { try output.emit(Report(ok: ok, credentials: credentials, sources: checks)) }
        output.say(credentials.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: "\n"))
        var table = TextTable(header: ["SOURCE", "AUTH", "DETAIL"])
        for check in checks {
            table.add([check.source, SourceProbe.authText(check.authenticated), check.errorCode.map { "[\($0)] \(check.detail)" } ?? check.detail])
        }
        output.say(table.rendered)
        if !ok { throw ExitCode(1) }
    }
}
