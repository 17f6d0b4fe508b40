import Foundation
import Synchronization
import WanCore

/// Where a command's results go: JSON on stdout with `--json`, human text on stderr.
/// Known secret values are scrubbed from everything printed.
final class Output: Sendable {
    let json: Bool
    private let scrubbed = Mutex<[String]>([])

    /// Secret values to scrub (set once the config is loaded).
    var secrets: [String] {
        get { scrubbed.withLock { $0 } }
        set { scrubbed.withLock { $0 = newValue } }
    }

    init(json: Bool) {
        self.json = json
    }

    /// Prints `value` as JSON on stdout.
    func emit(_ value: some Encodable) throws {
        let data = try Output.encoder.encode(value)
        FileHandle.standardOutput.write(Data((scrub(String(decoding: data, as: UTF8.self)) + "\n").utf8))
    }

    /// Prints a line for people on stderr.
    func say(_ text: String) {
        FileHandle.standardError.write(Data((scrub(text) + "\n").utf8))
    }

    /// Reports an error: on stderr, and as `{"error": {"code", "message"}}` on stdout with `--json`.
    func fail(_ error: any CodedError) {
        say("error: [\(error.code)] \(error)")
        if json {
            try? emit(["error": ["code": error.code.rawValue, "message": error.description]])
        }
    }

    private func scrub(_ text: String) -> String {
        secrets.reduce(text) { $0.replacingOccurrences(of: $1, with: "***") }
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()
}

/// Fixed-width text tables for human output.
struct TextTable {
    let header: [String]
    var rows: [[String]] = []

    mutating func add(_ row: [String]) { rows.append(row) }

    var rendered: String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
