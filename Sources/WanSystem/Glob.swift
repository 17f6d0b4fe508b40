import Glibc

/// Shell-style wildcard matching (fnmatch): `*`, `?`, `[...]`. `*` does not cross `/`
/// unless `matchSlashes` is set.
public enum Glob {
    public static func matches(_ pattern: String, _ path: String, matchSlashes: Bool = true) -> Bool {
        fnmatch(pattern, path, matchSlashes ? 0 : FNM_PATHNAME) == 0
    }
}
