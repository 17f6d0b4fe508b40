/// Renders manifest entries as TOML text (what `wan models manifest` writes).
public enum ManifestWriter {
    /// One `[models."ID"]` entry with its files and sources; files sorted by path.
    public static func render(modelID: String, description: String? = nil, files: [FileSpec], sources: [String],
                              includeSchemaVersion: Bool = false) -> String {
        var lines: [String] = []
        if includeSchemaVersion { lines += ["schema_version = 1", ""] }
        lines.append("[models.\(quote(modelID))]")
        if let description { lines.append("description = \(quote(description))") }
        lines.append("")
        for file in files.sorted(by: { $0.path < $1.path }) {
            lines.append("[[models.\(quote(modelID)).files]]")
            lines.append("path = \(quote(file.path))")
            lines.append("size = \(file.size)")
            lines.append("sha256 = \(quote(file.sha256))")
            if file.optional { lines.append("optional = true") }
            if let variant = file.variant { lines.append("variant = \(quote(variant))") }
            if let chunkSize = file.chunkSize { lines.append("chunk_size = \(chunkSize)") }
            if let chunks = file.chunks {
                lines.append(chunks.isEmpty ? "chunks = []" : "chunks = [")
                if !chunks.isEmpty {
                    lines += chunks.map { "    \(quote($0))," }
                    lines.append("]")
                }
            }
            lines.append("")
        }
        lines.append("[models.\(quote(modelID)).sources]")
        lines.append("priority = [" + sources.map(quote).joined(separator: ", ") + "]")
        return lines.joined(separator: "\n") + "\n"
    }

    /// A TOML basic string.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
