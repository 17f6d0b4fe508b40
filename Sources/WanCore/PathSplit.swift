/// A `/`-separated path cut at its last separator, without Foundation's `NSString` path
/// methods: on Linux, `deletingLastPathComponent` traps on a one-character name ("a"), and a
/// manifest may well name a file `a`.
public enum PathSplit {
    /// The directory part and the last component: `"x/y/z"` → `("x/y", "z")`, `"a"` → `("", "a")`,
    /// `"/a"` → `("/", "a")`. Trailing separators are ignored (`"x/y/"` → `("x", "y")`).
    public static func split(_ path: String) -> (parent: String, name: String) {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return ("", String(trimmed)) }
        let name = String(trimmed[trimmed.index(after: slash)...])
        var parent = trimmed[..<slash]
        while parent.count > 1, parent.hasSuffix("/") { parent = parent.dropLast() }
        return (parent.isEmpty ? "/" : String(parent), name)
    }

    /// The directory part (`""` for a bare name).
    public static func parent(_ path: String) -> String { split(path).parent }

    /// The last component.
    public static func name(_ path: String) -> String { split(path).name }
}
