import Foundation
import Logging

/// One JSON object per line (seed 001's structured logs): `ts` (RFC 3339, milliseconds),
/// `level`, `component` (the logger's label), `message`, then the metadata (`request_id`,
/// `model_id`, `duration_ms`, ...) as string fields. Nothing here ever holds a credential:
/// the middleware logs method, path (no query) and status only.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let label: String
    private let write: @Sendable (String) -> Void

    public init(label: String, level: Logger.Level = .info, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.logLevel = level
        self.write = write
    }

    public static let standardError: @Sendable (String) -> Void = { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = ["component": label]   // metadata may name another component
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) { fields[key] = "\(value)" }
        fields["ts"] = Self.timestamp(Date())
        fields["level"] = event.level.rawValue.uppercased()
        fields["message"] = "\(event.message)"
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(fields) else { return }
        write(String(decoding: data, as: UTF8.self))
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }

    /// swift-log's level for a configuration `log_level` (DEBUG, INFO, WARNING, ERROR).
    public static func level(_ name: String) -> Logger.Level {
        switch name.uppercased() {
        case "DEBUG": .debug
        case "WARNING", "WARN": .warning
        case "ERROR": .error
        default: .info
        }
    }
}
