/// Safety rules for file paths inside a model (seed 004's `_validate_path_safety` and
/// `_validate_case_collisions`).
///
/// A path is relative, `/`-separated, and every segment is a plain name: not empty,
/// not `.` or `..`, no backslash, no control characters, at most 255 bytes. These are the
/// names the mount shows and the cache writes, so a bad one could escape the model
/// directory or collide on a case-insensitive copy of the cache.
public enum PathRules {
    /// Why `path` is unsafe, or nil when it is fine.
    public static func problem(with path: String) -> String? {
        if path.isEmpty { return "the path is empty" }
        if path.hasPrefix("/") { return "the path is absolute; paths are relative to the model directory" }
        if path.contains("\\") { return "the path contains a backslash; use '/' between folders" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "the path contains a control character"
        }
        for segment in path.split(separator: "/", omittingEmptySubsequences: false) {
            switch segment {
            case "": return "the path has an empty segment ('//' or a trailing '/')"
            case "..": return "the path contains '..', which would escape the model directory"
            case ".": return "the path contains a '.' segment"
            default:
                if segment.utf8.count > 255 { return "a path segment is longer than 255 bytes" }
            }
        }
        return nil
    }

    /// Conflicts among paths that live in one directory tree: exact duplicates, names that
    /// differ only in case (for files and for the folders on their way), and a name used
    /// both as a file and as a folder. Each conflict is reported once, naming both paths.
    public static func conflicts(among paths: [String]) -> [(path: String, message: String)] {
        var found: [(String, String)] = []
        var seenFiles = Set<String>()
        var byFoldedName: [String: String] = [:]   // lower-cased file or folder path -> first spelling
        var folders = Set<String>()

        for path in paths {
            if seenFiles.contains(path) {
                found.append((path, "duplicate path (listed more than once)"))
                continue
            }
            seenFiles.insert(path)
            let segments = path.split(separator: "/")
            var prefix = ""
            for (i, segment) in segments.enumerated() {
                prefix += (i == 0 ? "" : "/") + segment
                let isFile = i == segments.count - 1
                if !isFile { folders.insert(prefix) }
                let folded = prefix.lowercased()
                if let first = byFoldedName[folded], first != prefix {
                    found.append((path, "'\(prefix)' differs only in case from '\(first)' (collides on case-insensitive filesystems)"))
                    break
                }
                byFoldedName[folded] = byFoldedName[folded] ?? prefix
            }
        }
        for path in seenFiles.sorted() where folders.contains(path) {
            found.append((path, "'\(path)' is listed as a file but other paths use it as a folder"))
        }
        return found
    }
}
