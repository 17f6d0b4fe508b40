/// Byte counts as people write them: `1048576`, `1KB` / `100GB` (decimal, powers of 1000),
/// `1KiB` / `100GiB` (binary, powers of 1024). Fractions are allowed (`1.5GB`); units are
/// case-insensitive except that the `i` marks binary. Bare `K`/`M`/`G` are refused as
/// ambiguous.
public enum ByteSize {
    private static let decimal: [String: Double] = ["b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "pb": 1e15]
    private static let binary: [String: Double] = [
        "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824, "tib": 1_099_511_627_776, "pib": 1_125_899_906_842_624,
    ]

    /// Parses a size; the error message says what was wrong.
    public static func parse(_ text: String) throws(OrchestratorError) -> Int64 {
        let trimmed = text.trimmingWhitespace()
        let numberPart = trimmed.prefix { $0.isNumber || $0 == "." }
        let unitPart = trimmed.dropFirst(numberPart.count).trimmingWhitespace().lowercased()
        func fail(_ why: String) -> OrchestratorError { .configInvalid(key: "size '\(text)'", message: why) }

        guard !numberPart.isEmpty, let number = Double(numberPart), number.isFinite else {
            throw fail("expected a number of bytes or a number with a unit such as 100GB or 64MiB")
        }
        let multiplier: Double
        if unitPart.isEmpty {
            multiplier = 1
        } else if let m = decimal[unitPart] ?? binary[unitPart] {
            multiplier = m
        } else if ["k", "m", "g", "t", "p"].contains(unitPart) {
            throw fail("unit '\(unitPart.uppercased())' is ambiguous; write \(unitPart.uppercased())B (powers of 1000) or \(unitPart.uppercased())iB (powers of 1024)")
        } else {
            throw fail("unknown unit '\(unitPart)'; use B, KB, MB, GB, TB (decimal) or KiB, MiB, GiB, TiB (binary)")
        }
        let bytes = (number * multiplier).rounded()
        guard bytes < 9.2e18 else { throw fail("the size is too large") }
        if unitPart.isEmpty && number != number.rounded() { throw fail("a byte count must be a whole number") }
        return Int64(bytes)
    }

    /// `1.50 GB`-style text with decimal units, for people (JSON carries raw byte counts).
    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB", "PB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if unit == 0 { return "\(bytes) B" }
        let rounded = (value * 100).rounded() / 100
        var text = "\(rounded)"
        if let dot = text.firstIndex(of: ".") {
            let decimals = text.distance(from: dot, to: text.endIndex) - 1
            if decimals < 2 { text += String(repeating: "0", count: 2 - decimals) }
        }
        return "\(text) \(units[unit])"
    }
}

/// Durations in configuration: a number of seconds, or text with a unit
/// (`90s`, `30m`, `12h`, `30d`, `2w`).
public enum DurationText {
    public static func parse(_ text: String, key: String) throws(OrchestratorError) -> Double {
        let trimmed = text.trimmingWhitespace().lowercased()
        let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
        var number = Substring(trimmed)
        var multiplier = 1.0
        if let last = trimmed.last, let m = units[last] {
            multiplier = m
            number = trimmed.dropLast()
        }
        guard let value = Double(number), value.isFinite, value >= 0 else {
            throw .configInvalid(key: key, message: "'\(text)' is not a duration; use seconds or a number with s, m, h, d or w (e.g. 30d)")
        }
        let seconds = value * multiplier
        guard seconds <= 1e11 else {
            throw .configInvalid(key: key, message: "'\(text)' is longer than any duration wanfs accepts (about 3000 years)")
        }
        return seconds
    }
}
