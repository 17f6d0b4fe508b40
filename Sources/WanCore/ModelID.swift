/// A validated, normalized model identifier: `name@version`, optionally with `#variant`
/// (seed 004's `NormalizedModelId`).
///
/// Rules (every id in a manifest, on the command line and in the API follows them):
/// - ASCII only; surrounding whitespace is trimmed, inner whitespace is an error.
/// - `name`: 1-128 characters from `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
///   Case is kept (`t2v-A14B` is not `t2v-a14b`).
/// - `version`: required; digits separated by dots (`2.2.0`), optionally followed by
///   `-` and a pre-release tag of `A-Z a-z 0-9 .` (`1.0.0-rc.1`).
/// - `variant`: optional; 1-32 characters from `a-z 0-9 _ -`, starting with a letter or
///   digit; upper case is folded to lower case (`FP16` becomes `fp16`).
public struct ModelID: Hashable, Sendable, Comparable, CustomStringConvertible, Codable {
    public let name: String
    public let version: String
    public let variant: String?

    /// `name@version`, the canonical id without variant.
    public var base: String { "\(name)@\(version)" }
    /// `name@version` or `name@version#variant`.
    public var description: String { variant.map { "\(base)#\($0)" } ?? base }

    /// Parses and normalizes `raw`. A `variant` argument overrides nothing: if `raw` also
    /// names a variant, the two must agree.
    public init(parsing raw: String, variant override: String? = nil) throws(OrchestratorError) {
        let text = raw.trimmingWhitespace()
        func fail(_ reason: String) -> OrchestratorError { .invalidModelID(raw, reason: reason) }

        if text.isEmpty { throw fail("it is empty") }
        if let bad = text.unicodeScalars.first(where: { !$0.isASCII }) {
            throw fail("it contains the non-ASCII character '\(bad)' (U+\(String(bad.value, radix: 16, uppercase: true)))")
        }
        if text.utf8.count > 200 { throw fail("it is longer than 200 characters") }

        let hashParts = text.split(separator: "#", omittingEmptySubsequences: false)
        guard hashParts.count <= 2 else { throw fail("it has more than one '#'") }
        let atParts = hashParts[0].split(separator: "@", omittingEmptySubsequences: false)
        guard atParts.count >= 2 else { throw fail("the version is missing (expected name@version, e.g. t2v-A14B@2.2.0)") }
        guard atParts.count == 2 else { throw fail("it has more than one '@'") }

        let name = String(atParts[0])
        let version = String(atParts[1])
        if let reason = ModelID.nameProblem(name) { throw fail(reason) }
        if let reason = ModelID.versionProblem(version) { throw fail(reason) }

        var variant: String?
        if hashParts.count == 2 {
            variant = try ModelID.normalizeVariant(String(hashParts[1]), in: raw)
        }
        if let override {
            let normalized = try ModelID.normalizeVariant(override, in: raw)
            if let variant, variant != normalized {
                throw fail("it names variant '\(variant)' but variant '\(normalized)' was also requested")
            }
            variant = normalized
        }
        self.name = name
        self.version = version
        self.variant = variant
    }

    /// The same model with another variant (or none).
    public func with(variant: String?) -> ModelID {
        ModelID(name: name, version: version, variant: variant)
    }

    private init(name: String, version: String, variant: String?) {
        self.name = name
        self.version = version
        self.variant = variant
    }

    public static func < (lhs: ModelID, rhs: ModelID) -> Bool { lhs.description < rhs.description }

    /// Validates and lower-cases a variant name.
    public static func normalizeVariant(_ raw: String, in context: String? = nil) throws(OrchestratorError) -> String {
        let variant = raw.trimmingWhitespace().lowercased()
        let subject = context ?? raw
        if variant.isEmpty { throw .invalidModelID(subject, reason: "the variant after '#' is empty") }
        if variant.utf8.count > 32 { throw .invalidModelID(subject, reason: "variant '\(variant)' is longer than 32 characters") }
        guard variant.unicodeScalars.allSatisfy({ $0.isASCII }) else {
            throw .invalidModelID(subject, reason: "variant '\(raw)' contains non-ASCII characters")
        }
        let bytes = Array(variant.utf8)
        guard bytes[0].isASCIILowerAlphanumeric,
              bytes.allSatisfy({ $0.isASCIILowerAlphanumeric || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") })
        else {
            throw .invalidModelID(subject, reason: "variant '\(variant)' may only contain a-z, 0-9, '_' and '-' and must start with a letter or digit")
        }
        return variant
    }

    static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "the name before '@' is empty" }
        if name.utf8.count > 128 { return "the name is longer than 128 characters" }
        let bytes = Array(name.utf8)
        guard bytes[0].isASCIIAlphanumeric else { return "the name must start with a letter or digit" }
        if let bad = bytes.first(where: { !($0.isASCIIAlphanumeric || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")) }) {
            return "the name contains '\(Character(Unicode.Scalar(bad)))'; allowed are A-Z, a-z, 0-9, '.', '_' and '-'"
        }
        return nil
    }

    static func versionProblem(_ version: String) -> String? {
        if version.isEmpty { return "the version after '@' is empty" }
        let parts = version.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        let numbers = parts[0].split(separator: ".", omittingEmptySubsequences: false)
        let numeric = numbers.allSatisfy { !$0.isEmpty && $0.utf8.allSatisfy(\.isASCIIDigit) }
        guard numeric else { return "version '\(version)' must be dot-separated numbers such as 2.2.0" }
        if parts.count == 2 {
            let tag = parts[1]
            guard !tag.isEmpty, tag.utf8.allSatisfy({ $0.isASCIIAlphanumeric || $0 == UInt8(ascii: ".") }) else {
                return "version '\(version)' has an invalid pre-release tag (use A-Z, a-z, 0-9 and '.')"
            }
        }
        return nil
    }
}

extension UInt8 {
    var isASCIIDigit: Bool { self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9") }
    var isASCIILowerAlphanumeric: Bool { isASCIIDigit || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z")) }
    var isASCIIAlphanumeric: Bool { isASCIILowerAlphanumeric || (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "Z")) }
}

extension StringProtocol {
    /// The string without leading and trailing spaces, tabs and newlines (no Foundation needed).
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else { return "" }
        return String(self[first...last])
    }
}
