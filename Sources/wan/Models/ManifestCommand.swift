import ArgumentParser
import Foundation
import WanCache
import WanCore
import WanSources
import WanSystem

/// `wan models manifest`: write a manifest entry (sizes, sha256, chunk digests) from a folder or a source.
struct ManifestCommand: WanCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest",
        abstract: "Write a manifest entry with sizes, sha256 and chunk digests from a local folder or a source.",
        discussion: """
        The entry (TOML) goes to stdout, or to --output. Chunk digests let the mount verify every range before
        serving it. From a source, every file is read once (streamed, not stored).
        Examples:
          wan models manifest --from-dir ./t2v --model-id t2v-A14B@2.2.0 --source s3://models/t2v > entry.toml
          wan models manifest --from-source hf://Wan-AI/Wan2.2-TI2V-5B --model-id ti2v-5b@2.2.0 --include '*.json'
        """)

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Digest the files of this folder.", valueName: "dir")) var fromDir: String?
    @Option(help: ArgumentHelp("Digest the files this source lists (local://, s3://, hf://).", valueName: "url")) var fromSource: String?
    @Option(help: ArgumentHelp("The model id of the entry (name@version).", valueName: "id")) var modelId: String
    @Option(help: ArgumentHelp("Sources for the entry's priority list (default: --from-source's URL).", valueName: "url")) var source: [String] = []
    @Option(help: ArgumentHelp("Only files matching this pattern (repeatable), e.g. '*.safetensors'.", valueName: "glob")) var include: [String] = []
    @Option(help: ArgumentHelp("Bytes per chunk digest: a cold first read waits for its whole chunk to arrive and verify; larger chunks make a smaller manifest.", valueName: "size")) var chunkSize = "2MiB"
    @Option(help: ArgumentHelp("Write to this file (with schema_version) instead of stdout.", valueName: "file")) var output: String?

    func validate() throws {
        guard (fromDir == nil) != (fromSource == nil) else { throw ValidationError("give exactly one of --from-dir DIR or --from-source URL") }
    }

    struct Entry: Encodable {
        let modelID: String
        let files: [FileSpec]
        let sources: [String]
        enum CodingKeys: String, CodingKey { case modelID = "model_id", files, sources }
    }

    func execute(_ out: Output) async throws {
        let id = try ModelID(parsing: modelId)
        guard id.variant == nil else { throw OrchestratorError.invalidModelID(modelId, reason: "give the model id without #variant") }
        let digester = ContentDigester(chunkSize: try ByteSize.parse(chunkSize))
        guard digester.chunkSize > 0 else { throw OrchestratorError.configInvalid(key: "--chunk-size", message: "must be > 0") }
        let config = try global.loadConfig()
        out.secrets = config.credentials.secretValues
        let filters = include
        func wanted(_ path: String) -> Bool { filters.isEmpty || filters.contains { Glob.matches($0, path) || Glob.matches($0, (path as NSString).lastPathComponent) } }

        var files: [FileSpec] = []
        var sources = source
        if let fromDir {
            let root = URL(fileURLWithPath: fromDir).standardizedFileURL.path
            guard (try? FileSystem.info(root))??.kind == .directory else {
                throw OrchestratorError.configInvalid(key: "--from-dir", message: "\(root) is not a folder")
            }
            let listed = try FileManager.default.subpathsOfDirectory(atPath: root).sorted().filter {
                (try? FileSystem.info(root + "/" + $0))??.kind == .regular && wanted($0)
            }
            for path in listed {
                out.say("digesting \(path)")
                files.append(try await Blocking.run { try digester.digest(fileAt: root + "/" + path, as: path) })
            }
        } else if let fromSource {
            let url = try SourceURL(parsing: fromSource)
            let backend = try SourceFactory(config: config, manifestDirectory: FileManager.default.currentDirectoryPath).backend(for: url)
            let listed = try await Blocking.run { try backend.list(prefix: "", cancel: .none) }.filter { wanted($0.path) }
            for remote in listed {
                out.say("digesting \(remote.path) (\(ByteSize.format(remote.size)))")
                let file = try await Blocking.run { try digester.digest(remote, from: backend) }
                if let known = remote.sha256, known != file.sha256 {
                    throw OrchestratorError.checksumMismatch(path: remote.path, expected: known, actual: file.sha256)
                }
                files.append(file)
            }
            if sources.isEmpty { sources = [fromSource] }
        }
        guard !files.isEmpty else { throw OrchestratorError.configInvalid(key: "--include", message: "no files matched") }
        for raw in sources { _ = try SourceURL(parsing: raw) }

        if global.json {
            try out.emit(Entry(modelID: id.base, files: files, sources: sources))
            return
        }
        let text = ManifestWriter.render(modelID: id.base, files: files, sources: sources, includeSchemaVersion: output != nil)
        if let output {
            try Data(text.utf8).write(to: URL(fileURLWithPath: output))
            // Prove what was written parses and validates.
            _ = try ModelRegistry(manifestPath: output)
            out.say("wrote \(output): \(files.count) files, \(ByteSize.format(files.reduce(0) { $0 + $1.size }))")
        } else {
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}
