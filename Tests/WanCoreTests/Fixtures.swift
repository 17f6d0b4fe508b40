import Foundation
@testable import WanCore

/// Test manifests shipped with the test target (Tests/WanCoreTests/Fixtures).
enum Fixtures {
    static func path(_ name: String) -> String {
        Bundle.module.url(forResource: name, withExtension: "toml", subdirectory: "Fixtures")!.path
    }

    static func text(_ name: String) -> String {
        try! String(contentsOfFile: path(name), encoding: .utf8)
    }

    static var variantsManifest: String { text("variants") }

    static let zeros = String(repeating: "0", count: 64)

    /// A one-model manifest with `files` (TOML for the [[files]] entries) and `extra` model keys.
    static func manifest(id: String = "m@1.0.0", model: String = "", files: String? = nil,
                         sources: String = #"priority = ["local://m"]"#, header: String = "schema_version = 1") -> String {
        let fileEntries = files ?? """
        [[models."\(id)".files]]
        path = "config.json"
        size = 1
        sha256 = "\(zeros)"
        """
        return """
        \(header)

        [models."\(id)"]
        \(model)

        \(fileEntries)

        [models."\(id)".sources]
        \(sources)
        """
    }

    /// One [[files]] entry.
    static func file(_ path: String, size: String = "1", sha256: String? = nil, extra: String = "", id: String = "m@1.0.0") -> String {
        """
        [[models."\(id)".files]]
        path = "\(path)"
        size = \(size)
        sha256 = "\(sha256 ?? zeros)"
        \(extra)

        """
    }
}
