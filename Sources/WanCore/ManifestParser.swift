/// A parsed `models.toml`.
public struct Manifest: Sendable, Equatable {
    /// The manifest format this version reads.
    public static let supportedSchemaVersions: [Int64] = [1]

    public let schemaVersion: Int64
    /// Models sorted by id.
    public let models: [ModelSpec]
}

/// Turns a manifest's value tree into ``ModelSpec``s, collecting every problem instead of
/// stopping at the first, so `wan models validate-manifest` can list them all.
///
/// Models with problems are still parsed as far as possible (so one typo does not hide the
/// rest of the manifest), but a manifest with any issue must not be used to fetch or serve.
struct ManifestParser {
    private(set) var issues: [ManifestIssue] = []

    mutating func parse(_ root: [String: ManifestValue]) -> Manifest {
        guard let schemaVersion = checkSchemaVersion(root["schema_version"]) else {
            return Manifest(schemaVersion: 0, models: [])
        }
        guard let modelsValue = root["models"] else {
            issue(nil, "models", "the manifest has no [models.\"name@version\"] tables")
            return Manifest(schemaVersion: schemaVersion, models: [])
        }
        guard let modelTables = modelsValue.tableValue else {
            issue(nil, "models", "expected a table of models, found \(modelsValue.typeName)")
            return Manifest(schemaVersion: schemaVersion, models: [])
        }

        var models: [ModelSpec] = []
        var foldedIDs: [String: String] = [:]
        for key in modelTables.keys.sorted() {
            guard let table = modelTables[key]?.tableValue else {
                issue(key, nil, "expected a table, found \(modelTables[key]?.typeName ?? "nothing")")
                continue
            }
            guard let spec = parseModel(key: key, table) else { continue }
            if let other = foldedIDs[spec.modelID.lowercased()] {
                let what = other == spec.modelID ? "is defined twice" : "differs only in case from '\(other)'"
                issue(key, nil, "model id \(spec.modelID) \(what)")
                continue
            }
            foldedIDs[spec.modelID.lowercased()] = spec.modelID
            models.append(spec)
        }
        checkContentSizes(models)
        return Manifest(schemaVersion: schemaVersion, models: models.sorted { $0.modelID < $1.modelID })
    }

    // MARK: - Document level

    /// A sha256 names one content, so one size: two sizes for one sha256 mean one entry is wrong.
    private mutating func checkContentSizes(_ models: [ModelSpec]) {
        var seen: [String: (size: Int64, model: String, path: String)] = [:]
        for model in models {
            for file in model.files {
                if let first = seen[file.sha256] {
                    if first.size != file.size {
                        issue(model.modelID, file.path, "sha256 \(file.sha256) is listed with size \(file.size) here and \(first.size) at \(first.model) \(first.path): one content has one size")
                    }
                } else {
                    seen[file.sha256] = (file.size, model.modelID, file.path)
                }
            }
        }
    }

    private mutating func checkSchemaVersion(_ value: ManifestValue?) -> Int64? {
        let supported = Manifest.supportedSchemaVersions.map(String.init).joined(separator: ", ")
        guard let value else {
            issue(nil, "schema_version", "schema_version is missing; add `schema_version = 1` as the first line (supported: \(supported))")
            return nil
        }
        guard let version = value.integerValue else {
            issue(nil, "schema_version", "schema_version must be an integer such as 1, found \(value.typeName)")
            return nil
        }
        if Manifest.supportedSchemaVersions.contains(version) { return version }
        if version > Manifest.supportedSchemaVersions.max()! {
            issue(nil, "schema_version", "schema_version \(version) is newer than this wanfs understands (supported: \(supported)); upgrade wanfs to read it")
        } else {
            issue(nil, "schema_version", "schema_version \(version) is no longer supported (supported: \(supported)); migrate it: set `schema_version = 1`, key models by \"name@version\", and give every file a path, size and sha256 (see docs/manifest.md)")
        }
        return nil
    }

    // MARK: - Models

    private mutating func parseModel(key: String, _ table: [String: ManifestValue]) -> ModelSpec? {
        let id: ModelID
        do {
            id = try ModelID(parsing: key)
        } catch {
            issue(key, nil, error.description)
            return nil
        }
        if id.variant != nil {
            issue(key, nil, "a model key may not name a variant; list variants in `variants = [...]` and mark files with `variant = \"...\"`")
            return nil
        }
        let modelID = id.base
        var reader = TableReader(table: table, modelID: modelID, prefix: nil)
        defer { issues += reader.issues }

        if let version = reader.string("version"), version != id.version {
            reader.issue("version", "version '\(version)' does not match the id's version '\(id.version)'")
        }
        let description = reader.string("description")

        var variants: [String] = []
        for raw in reader.strings("variants") ?? [] {
            do {
                let variant = try ModelID.normalizeVariant(raw)
                if variants.contains(variant) {
                    reader.issue("variants", "variant '\(variant)' is listed twice")
                } else {
                    variants.append(variant)
                }
            } catch {
                reader.issue("variants", error.description)
            }
        }
        var defaultVariant = variants.first
        if let raw = reader.string("default_variant") {
            let normalized = (try? ModelID.normalizeVariant(raw)) ?? raw
            if variants.contains(normalized) {
                defaultVariant = normalized
            } else {
                let list = variants.isEmpty ? "the model declares no variants" : "variants are \(variants.joined(separator: ", "))"
                reader.issue("default_variant", "default_variant '\(raw)' is not one of the model's variants (\(list))")
            }
        }

        let resolutionCaps = reader.strings("resolution_caps") ?? []
        let optionalComponents = reader.strings("optional_components") ?? []
        let loraRequired = reader.bool("lora_required") ?? false
        var allowPatterns = reader.strings("allow_patterns") ?? []

        var sources: [SourceURL] = []
        var sourceTexts: [String] = []
        switch table["sources"] {
        case .table(let sourceTable)?:
            reader.consume("sources")
            var sourceReader = TableReader(table: sourceTable, modelID: modelID, prefix: "sources")
            sourceTexts = sourceReader.strings("priority") ?? []
            allowPatterns += sourceReader.strings("allow_patterns") ?? []
            if sourceTable["priority"] == nil { sourceReader.issue("priority", "sources has no `priority = [...]` list") }
            sourceReader.rejectUnknown()
            reader.issues += sourceReader.issues
        case .array?:
            sourceTexts = reader.strings("sources") ?? []
        case let other?:
            reader.consume("sources")
            reader.issue("sources", "expected a table with `priority = [...]`, found \(other.typeName)")
        case nil:
            break
        }
        for text in sourceTexts {
            do {
                let url = try SourceURL(parsing: text)
                if sources.contains(url) {
                    reader.issue("sources", "source '\(text)' is listed twice")
                } else {
                    sources.append(url)
                }
            } catch {
                reader.issue("sources", error.description)
            }
        }
        if sources.isEmpty && !reader.issues.contains(where: { $0.path?.hasPrefix("sources") == true }) {
            reader.issue("sources", "the model has no sources; add [models.\"\(modelID)\".sources] priority = [\"local://...\", \"s3://...\", \"hf://...\"]")
        }

        let files = parseFiles(table["files"], reader: &reader, variants: variants)
        // Every total of the model's sizes must be a number: together they stay below the largest file size.
        var total: Int64 = 0
        for file in files {
            guard let sum = total.checkedAdding(file.size), sum <= FileSpec.maxSize else {
                reader.issue("files", "the files' sizes add up to more than \(FileSpec.maxSize) bytes")
                break
            }
            total = sum
        }
        let vram = table["vram_estimation"].flatMap { parseVram($0, reader: &reader) }
        let defaults = table["defaults"].flatMap { parseDefaults($0, reader: &reader) }
        reader.consume("files", "vram_estimation", "defaults")

        return ModelSpec(
            modelID: modelID, version: id.version, description: description, variants: variants,
            defaultVariant: defaultVariant, files: files, sources: sources, allowPatterns: allowPatterns,
            resolutionCaps: resolutionCaps, optionalComponents: optionalComponents, loraRequired: loraRequired,
            vramEstimation: vram, defaults: defaults, extra: reader.remaining)
    }

    // MARK: - Files

    private func parseFiles(_ value: ManifestValue?, reader: inout TableReader, variants: [String]) -> [FileSpec] {
        guard let value else {
            reader.issue("files", "the model has no files; add [[models.\"\(reader.modelID)\".files]] entries with path, size and sha256")
            return []
        }
        guard let entries = value.arrayValue else {
            reader.issue("files", "expected an array of tables ([[...files]]), found \(value.typeName)")
            return []
        }
        if entries.isEmpty { reader.issue("files", "the model's file list is empty") }

        var files: [FileSpec] = []
        for (index, entry) in entries.enumerated() {
            guard let table = entry.tableValue else {
                reader.issue("files[\(index)]", "expected a table, found \(entry.typeName)")
                continue
            }
            let label = table["path"]?.stringValue ?? "files[\(index)]"
            var fileReader = TableReader(table: table, modelID: reader.modelID, prefix: nil, subject: label)
            if let file = parseFile(&fileReader, variants: variants) { files.append(file) }
            fileReader.rejectUnknown()
            reader.issues += fileReader.issues
        }

        // Conflicts are judged per variant: each variant sees the common files plus its own.
        let views: [String?] = variants.isEmpty ? [nil] : variants
        var reported = Set<String>()
        for view in views {
            let paths = files.filter { $0.belongs(to: view) }.map(\.path)
            for conflict in PathRules.conflicts(among: paths) {
                let text = conflict.message + (view.map { " in variant '\($0)'" } ?? "")
                if reported.insert(conflict.path + "\u{0}" + conflict.message).inserted {
                    reader.issue(conflict.path, text, isPath: true)
                }
            }
        }
        return files
    }

    private func parseFile(_ reader: inout TableReader, variants: [String]) -> FileSpec? {
        let path = reader.string("path", required: true)
        let size = reader.integer("size", required: true)
        var sha256 = reader.string("sha256", required: true)
        let optional = reader.bool("optional") ?? false
        var variant = reader.string("variant")
        let chunkSize = reader.integer("chunk_size")
        let chunks = reader.strings("chunks")

        if let p = path, let problem = PathRules.problem(with: p) { reader.issue(nil, problem) }
        if let size, size < 0 || size > FileSpec.maxSize {
            reader.issue("size", "size must be between 0 and \(FileSpec.maxSize) (\(ByteSize.format(FileSpec.maxSize))), found \(size)")
        }
        if let digest = sha256 {
            if Hex.isSHA256(digest) { sha256 = digest.lowercased() } else {
                reader.issue("sha256", "sha256 must be 64 hex characters, found '\(digest)' (\(digest.count) characters)")
            }
        }
        if let raw = variant {
            let normalized = (try? ModelID.normalizeVariant(raw)) ?? raw
            if variants.contains(normalized) { variant = normalized } else {
                let list = variants.isEmpty ? "the model declares no variants" : "variants are \(variants.joined(separator: ", "))"
                reader.issue("variant", "variant '\(raw)' is not one of the model's variants (\(list))")
            }
        }
        var chunkDigests: [String]?
        let validChunkSize = chunkSize.map { (1...FileSpec.maxChunkSize).contains($0) } ?? false
        if let chunkSize, !validChunkSize {
            reader.issue("chunk_size", "chunk_size must be between 1 and \(FileSpec.maxChunkSize) (\(ByteSize.format(FileSpec.maxChunkSize))), found \(chunkSize)")
        }
        if size == 0 && (chunkSize != nil || chunks != nil) {
            reader.issue("chunks", "an empty file has no chunks: remove chunk_size and chunks")
        }
        if let chunks {
            chunkDigests = chunks.map { $0.lowercased() }
            if let bad = chunks.firstIndex(where: { !Hex.isSHA256($0) }) {
                reader.issue("chunks", "chunks[\(bad)] is not 64 hex characters")
            }
            if let chunkSize, validChunkSize, let size, size > 0, size <= FileSpec.maxSize {
                let expected = size / chunkSize + (size % chunkSize == 0 ? 0 : 1)
                if Int64(chunks.count) != expected {
                    reader.issue("chunks", "\(chunks.count) chunk digests do not cover the file: size \(size) with chunk_size \(chunkSize) needs \(expected)")
                }
            } else if chunkSize == nil {
                reader.issue("chunks", "chunks are given without chunk_size")
            }
        }
        // A file with other problems is still returned (the manifest is invalid anyway) so
        // that path conflicts with it are reported too; an unsafe path is not.
        guard let path, let size, let sha256, PathRules.problem(with: path) == nil else { return nil }
        return FileSpec(path: path, size: size, sha256: sha256, optional: optional, variant: variant,
                        chunkSize: chunkSize, chunks: chunkDigests)
    }

    // MARK: - Optional tables (seed 004)

    private func parseVram(_ value: ManifestValue, reader: inout TableReader) -> VramEstimation? {
        guard let table = value.tableValue else {
            reader.issue("vram_estimation", "expected a table, found \(value.typeName)")
            return nil
        }
        var r = TableReader(table: table, modelID: reader.modelID, prefix: "vram_estimation")
        defer { reader.issues += r.issues }
        let params = r.number("params_billion", in: .greaterThan(0))
        let bytes = r.number("bytes_per_param", in: .greaterThan(0))
        let overhead = r.number("activation_overhead_gb", in: .atLeast(0))
        var perResolution: [String: Double] = [:]
        if let figures = r.table("per_resolution_gb") {
            for (resolution, figure) in figures {
                if let gb = figure.numberValue, gb > 0 {
                    perResolution[resolution] = gb
                } else {
                    let found = figure.numberValue.map { "\($0)" } ?? figure.typeName
                    r.issue("per_resolution_gb.\(resolution)", "'per_resolution_gb.\(resolution)' must be a number of GB > 0, found \(found)")
                }
            }
        }
        return VramEstimation(paramsBillion: params, bytesPerParam: bytes, activationOverheadGB: overhead,
                              perResolutionGB: perResolution, extra: r.remaining)
    }

    private func parseDefaults(_ value: ManifestValue, reader: inout TableReader) -> ModelDefaults? {
        guard let table = value.tableValue else {
            reader.issue("defaults", "expected a table, found \(value.typeName)")
            return nil
        }
        var r = TableReader(table: table, modelID: reader.modelID, prefix: "defaults")
        defer { reader.issues += r.issues }
        let steps = r.integer("steps", in: 1...10_000)
        let guidance = r.number("guidance_scale", in: .atLeast(0))
        let fps = r.integer("fps", in: 1...1_000)
        let frames = r.integer("frames", in: 1...1_000_000)
        let resolution = r.string("resolution")
        if let resolution, !Self.isResolution(resolution) {
            r.issue("resolution", "resolution '\(resolution)' must look like 1280x720 or 720p")
        }
        return ModelDefaults(steps: steps, guidanceScale: guidance, resolution: resolution, fps: fps,
                             frames: frames, extra: r.remaining)
    }

    /// `1280x720`, `720p` or `720p24`.
    static func isResolution(_ text: String) -> Bool {
        let parts = text.split(separator: "x", omittingEmptySubsequences: false)
        if parts.count == 2 { return parts.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy(\.isASCIIDigit) } }
        let p = text.split(separator: "p", omittingEmptySubsequences: false)
        return p.count == 2 && !p[0].isEmpty && p[0].utf8.allSatisfy(\.isASCIIDigit) && p[1].utf8.allSatisfy(\.isASCIIDigit)
    }

    private mutating func issue(_ modelID: String?, _ path: String?, _ message: String) {
        issues.append(ManifestIssue(modelID: modelID, path: path, message: message))
    }
}

/// Typed reads from one TOML table, recording an issue for each wrong type and
/// remembering which keys were read so the rest can be kept or rejected.
struct TableReader {
    enum Bound {
        case greaterThan(Double)
        case atLeast(Double)
    }

    let table: [String: ManifestValue]
    let modelID: String
    let prefix: String?
    /// For file entries: the file's path, used as the issue's path.
    let subject: String?
    var issues: [ManifestIssue] = []
    private var consumed = Set<String>()

    init(table: [String: ManifestValue], modelID: String, prefix: String?, subject: String? = nil) {
        self.table = table
        self.modelID = modelID
        self.prefix = prefix
        self.subject = subject
    }

    /// Keys not read so far, as written.
    var remaining: [String: ManifestValue] { table.filter { !consumed.contains($0.key) } }

    mutating func consume(_ keys: String...) { consumed.formUnion(keys) }

    mutating func issue(_ key: String?, _ message: String, isPath: Bool = false) {
        let path: String?
        if isPath {
            path = key
        } else if let subject {
            path = subject
        } else {
            path = [prefix, key].compactMap { $0 }.joined(separator: ".")
        }
        issues.append(ManifestIssue(modelID: modelID, path: path, message: message))
    }

    /// Unknown keys are an error here (used where a typo would silently change meaning).
    mutating func rejectUnknown() {
        for key in remaining.keys.sorted() {
            issue(key, "unknown key '\(key)'")
        }
    }

    private mutating func value(_ key: String, required: Bool) -> ManifestValue? {
        consumed.insert(key)
        guard let value = table[key] else {
            if required { issue(key, "missing required key '\(key)'") }
            return nil
        }
        return value
    }

    mutating func string(_ key: String, required: Bool = false) -> String? {
        guard let v = value(key, required: required) else { return nil }
        guard let s = v.stringValue else { issue(key, "'\(key)' must be a string, found \(v.typeName)"); return nil }
        return s
    }

    mutating func integer(_ key: String, required: Bool = false, in range: ClosedRange<Int64>? = nil) -> Int64? {
        guard let v = value(key, required: required) else { return nil }
        guard let n = v.integerValue else { issue(key, "'\(key)' must be an integer, found \(v.typeName)"); return nil }
        if let range, !range.contains(n) {
            issue(key, "\(key) must be between \(range.lowerBound) and \(range.upperBound), found \(n)")
            return nil
        }
        return n
    }

    mutating func number(_ key: String, in bound: Bound) -> Double? {
        guard let v = value(key, required: false) else { return nil }
        guard let n = v.numberValue else { issue(key, "'\(key)' must be a number, found \(v.typeName)"); return nil }
        switch bound {
        case .greaterThan(let b) where !(n > b):
            issue(key, "\(key) must be > \(b), found \(n)"); return nil
        case .atLeast(let b) where !(n >= b):
            issue(key, "\(key) must be >= \(b), found \(n)"); return nil
        default:
            return n
        }
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let v = value(key, required: false) else { return nil }
        guard let b = v.boolValue else { issue(key, "'\(key)' must be true or false, found \(v.typeName)"); return nil }
        return b
    }

    mutating func strings(_ key: String) -> [String]? {
        guard let v = value(key, required: false) else { return nil }
        guard let array = v.arrayValue else { issue(key, "'\(key)' must be an array of strings, found \(v.typeName)"); return nil }
        var result: [String] = []
        for (i, element) in array.enumerated() {
            if let s = element.stringValue { result.append(s) } else {
                issue(key, "\(key)[\(i)] must be a string, found \(element.typeName)")
            }
        }
        return result
    }

    mutating func table(_ key: String) -> [String: ManifestValue]? {
        guard let v = value(key, required: false) else { return nil }
        guard let t = v.tableValue else { issue(key, "'\(key)' must be a table, found \(v.typeName)"); return nil }
        return t
    }
}

/// Hex helpers shared by the manifest and the cache.
public enum Hex {
    /// True for exactly 64 hex digits (either case).
    public static func isSHA256(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { $0.isASCIIDigit || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0 | 0x20) }
    }
}
