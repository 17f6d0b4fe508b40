import TOMLKit

/// A TOML (or JSON) value, detached from the parser.
///
/// The manifest is converted into this tree right after parsing so the rest of the code
/// never touches TOMLKit, and keys this version does not know (seed 004: "unknown keys are
/// kept, not dropped") can be carried through `spec()`, status output and the sidecar.
public enum ManifestValue: Sendable, Equatable, Hashable {
    case string(String)
    case integer(Int64)
    case double(Double)
    case bool(Bool)
    case array([ManifestValue])
    case table([String: ManifestValue])
    /// TOML dates and times, kept as their TOML text.
    case datetime(String)

    /// The TOML type name, for error messages ("expected an integer, found a string").
    public var typeName: String {
        switch self {
        case .string: "a string"
        case .integer: "an integer"
        case .double: "a float"
        case .bool: "a boolean"
        case .array: "an array"
        case .table: "a table"
        case .datetime: "a date/time"
        }
    }

    public var stringValue: String? { if case .string(let v) = self { v } else { nil } }
    public var integerValue: Int64? { if case .integer(let v) = self { v } else { nil } }
    public var boolValue: Bool? { if case .bool(let v) = self { v } else { nil } }
    public var arrayValue: [ManifestValue]? { if case .array(let v) = self { v } else { nil } }
    public var tableValue: [String: ManifestValue]? { if case .table(let v) = self { v } else { nil } }
    /// A number as a Double (integers widen).
    public var numberValue: Double? {
        switch self {
        case .double(let v): v
        case .integer(let v): Double(v)
        default: nil
        }
    }
}

extension ManifestValue: Codable {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let v = try? container.decode(Bool.self) { self = .bool(v) }
        else if let v = try? container.decode(Int64.self) { self = .integer(v) }
        else if let v = try? container.decode(Double.self) { self = .double(v) }
        else if let v = try? container.decode(String.self) { self = .string(v) }
        else if let v = try? container.decode([ManifestValue].self) { self = .array(v) }
        else { self = .table(try container.decode([String: ManifestValue].self)) }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let v), .datetime(let v): try container.encode(v)
        case .integer(let v): try container.encode(v)
        case .double(let v): try container.encode(v)
        case .bool(let v): try container.encode(v)
        case .array(let v): try container.encode(v)
        case .table(let v): try container.encode(v)
        }
    }
}

/// Where a TOML document failed to parse.
public struct TOMLSyntaxError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public let line: Int
    public let column: Int
    public var description: String { "TOML syntax error at line \(line), column \(column): \(message)" }
}

extension ManifestValue {
    /// Parses TOML text into a value tree.
    public static func parseTOML(_ text: String) throws(TOMLSyntaxError) -> [String: ManifestValue] {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw TOMLSyntaxError(message: error.description, line: error.source.begin.line, column: error.source.begin.column)
        } catch {
            throw TOMLSyntaxError(message: "\(error)", line: 0, column: 0)
        }
        return convert(table)
    }

    private static func convert(_ table: TOMLTable) -> [String: ManifestValue] {
        var result: [String: ManifestValue] = [:]
        for key in table.keys {
            if let value = table[key] { result[key] = convert(value) }
        }
        return result
    }

    private static func convert(_ value: any TOMLValueConvertible) -> ManifestValue {
        switch value.type {
        case .string: return .string(value.string ?? "")
        case .int: return .integer(Int64(value.int ?? 0))
        case .double: return .double(value.double ?? 0)
        case .bool: return .bool(value.bool ?? false)
        case .array: return .array((value.array ?? TOMLArray()).map { convert($0) })
        case .table: return .table(convert(value.table ?? TOMLTable()))
        default: return .datetime(value.debugDescription)
        }
    }
}
