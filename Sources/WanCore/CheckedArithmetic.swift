/// Arithmetic on numbers that came from a server or a file: never a trap.
extension Int64 {
    /// `self + other`, or nil when it does not fit.
    public func checkedAdding(_ other: Int64) -> Int64? {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? nil : sum
    }

    /// `self * other`, or nil when it does not fit.
    public func checkedMultiplying(_ other: Int64) -> Int64? {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? nil : product
    }

    /// `self + other`, held at the nearest bound when it does not fit (for counters and totals).
    public func addingClamped(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }

    /// A decimal integer as HTTP and S3 write it: ASCII digits only (no sign, no spaces, no
    /// `+`), at most 18 of them so it always fits. nil for anything else.
    public init?(strictDecimal text: some StringProtocol) {
        guard !text.isEmpty, text.count <= 18, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let value = Int64(text) else { return nil }
        self = value
    }
}
