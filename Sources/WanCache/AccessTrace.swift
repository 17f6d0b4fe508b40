import Foundation
import WanCore

/// The order in which a model's bytes were first read by a cold load, kept to be replayed as
/// prefetch by a later cold load (a mount, `wan models prefetch`): per file, the byte ranges
/// in first-touch order, merged where one continues the last. Small (a full load of a
/// sharded model is a few hundred ranges), portable (`wan models trace export|import`): its
/// files are named by path *and* content, so a trace never steers the fetch of other bytes.
///
/// Everything in it is hostile input when it was read from a file: ``resolve(against:)``
/// checks every number before a range is fetched.
public struct AccessTrace: Sendable, Equatable, Codable {
    public struct File: Sendable, Hashable, Codable {
        public let path: String
        public let sha256: String
        public let size: Int64

        public init(path: String, sha256: String, size: Int64) {
            self.path = path
            self.sha256 = sha256
            self.size = size
        }

        public init(_ file: FileSpec) { self.init(path: file.path, sha256: file.sha256, size: file.size) }
    }

    /// One range of one file (`file` indexes ``files``), first read `at` seconds after the
    /// load's first read.
    public struct Extent: Sendable, Equatable, Codable {
        public let file: Int
        public let offset: Int64
        public var length: Int64
        public let at: Double

        public init(file: Int, offset: Int64, length: Int64, at: Double) {
            self.file = file
            self.offset = offset
            self.length = length
            self.at = at
        }
    }

    public static let currentVersion = 1
    /// Bounds a trace from a file must respect (a real one is far below them).
    public static let maxRanges = 50_000
    /// (A model has hundreds of files at most: files are looked up by a walk.)
    public static let maxFiles = 10_000
    public static let maxFileBytes = 8 << 20

    public var version = AccessTrace.currentVersion
    /// `name@version`.
    public let model: String
    public let variant: String?
    public private(set) var files: [File] = []
    public private(set) var ranges: [Extent] = []
    /// How many recorded loads were merged into it.
    public var runs = 0
    public var updated: Date?

    public init(model: String, variant: String?) {
        self.model = model
        self.variant = variant
    }

    /// The bytes it names (ranges never overlap).
    public var byteCount: Int64 { ranges.reduce(0) { $0.addingClamped($1.length) } }

    // MARK: - Recording

    /// Adds what of `range` of `file` is not in the trace yet, first read at `at`; merges it
    /// into the last range when it continues it. False when it added nothing (already there,
    /// or the trace is full).
    @discardableResult
    public mutating func touch(_ file: File, _ range: Range<Int64>, at: Double, covered: inout [Int: RangeSet]) -> Bool {
        let wanted = range.clamped(to: 0..<max(0, file.size))
        guard !wanted.isEmpty, ranges.count < Self.maxRanges else { return false }
        let index: Int
        if let known = files.firstIndex(of: file) {
            index = known
        } else {
            guard files.count < Self.maxFiles else { return false }
            files.append(file)
            index = files.count - 1
        }
        let missing = covered[index, default: RangeSet()].missing(in: wanted)
        guard !missing.isEmpty else { return false }
        for piece in missing where ranges.count < Self.maxRanges || continues(index, piece) {
            covered[index, default: RangeSet()].insert(piece)
            if continues(index, piece) {
                ranges[ranges.count - 1].length += Int64(piece.count)
            } else {
                ranges.append(Extent(file: index, offset: piece.lowerBound, length: Int64(piece.count), at: at))
            }
        }
        return true
    }

    /// Adds `range` of `file` as is (the caller knows it overlaps nothing in the trace).
    mutating func append(_ file: File, _ range: Range<Int64>, at: Double) {
        guard !range.isEmpty, ranges.count < Self.maxRanges else { return }
        let index: Int
        if let known = files.firstIndex(of: file) {
            index = known
        } else {
            guard files.count < Self.maxFiles else { return }
            files.append(file)
            index = files.count - 1
        }
        if continues(index, range) {
            ranges[ranges.count - 1].length += Int64(range.count)
        } else {
            ranges.append(Extent(file: index, offset: range.lowerBound, length: Int64(range.count), at: at))
        }
    }

    private func continues(_ file: Int, _ piece: Range<Int64>) -> Bool {
        guard let last = ranges.last else { return false }
        return last.file == file && last.offset + last.length == piece.lowerBound
    }

    // MARK: - Merging

    /// The union of two traces of the same model, each byte at its earliest touch in either
    /// (ties: this one first). Files are matched by path and content.
    /// Ranges that name no file or no bytes of one (a trace not checked) are left out.
    public func merged(with other: AccessTrace) -> AccessTrace {
        var result = AccessTrace(model: model, variant: variant)
        result.runs = runs.addingReportingOverflow(other.runs).overflow ? Int.max : runs + other.runs
        result.updated = [updated, other.updated].compactMap { $0 }.max()
        let all = extents + other.extents
        // A stable sort by first touch.
        let ordered = all.enumerated().sorted { ($0.element.at, $0.offset) < ($1.element.at, $1.offset) }
        var covered: [Int: RangeSet] = [:]
        for (_, extent) in ordered { result.touch(extent.file, extent.range, at: extent.at, covered: &covered) }
        return result
    }

    /// The ranges with their files, those that make sense only.
    private var extents: [(file: File, range: Range<Int64>, at: Double)] {
        ranges.compactMap { extent in
            guard files.indices.contains(extent.file), extent.offset >= 0, extent.length > 0,
                  let end = extent.offset.checkedAdding(extent.length) else { return nil }
            return (files[extent.file], extent.offset..<end, extent.at.isFinite ? extent.at : .infinity)
        }
    }

    // MARK: - Restricting

    /// The same trace without the files `spec` does not have with the same path and content
    /// (and without ranges that name no bytes of their file). For a trace whose ranges do not
    /// overlap (recorded here, or checked by ``resolve(against:)``): it only keeps and appends.
    public func restricted(to spec: ModelSpec) -> AccessTrace {
        let wanted = Set(spec.files.map(File.init))
        var result = AccessTrace(model: model, variant: variant)
        result.runs = runs
        result.updated = updated
        for extent in ranges where files.indices.contains(extent.file) && wanted.contains(files[extent.file]) {
            guard extent.offset >= 0, extent.length > 0, let end = extent.offset.checkedAdding(extent.length),
                  end <= files[extent.file].size else { continue }
            result.append(files[extent.file], extent.offset..<end, at: extent.at)
        }
        return result
    }

    // MARK: - Checking

    /// What to fetch, in order: every range of a file the model still has with the same
    /// content. Ranges of files the model no longer has, or has with other content, are
    /// left out (`skipped` names those files).
    ///
    /// - Throws: `.configInvalid` naming what is wrong when the trace is not one (another
    ///   model, an unknown version, a range outside its file, numbers that do not add up).
    public func resolve(against spec: ModelSpec) throws(OrchestratorError) -> (ranges: [(FileSpec, Range<Int64>)], skipped: [String]) {
        func bad(_ message: String) -> OrchestratorError { .configInvalid(key: "trace", message: message) }
        guard version == Self.currentVersion else { throw bad("version \(version) is not one this wan reads (\(Self.currentVersion))") }
        guard model == spec.modelID else { throw bad("it is the trace of \(model), not of \(spec.modelID)") }
        guard (variant ?? spec.defaultVariant) == (spec.variant ?? spec.defaultVariant) else {
            throw bad("it is the trace of variant \(variant ?? "(default)"), not of \(spec.variant ?? "(default)")")
        }
        guard files.count <= Self.maxFiles, ranges.count <= Self.maxRanges else {
            throw bad("it names \(files.count) files and \(ranges.count) ranges (at most \(Self.maxFiles) and \(Self.maxRanges))")
        }
        let byPath = Dictionary(spec.files.map { ($0.path, $0) }) { first, _ in first }
        var matched: [Int: FileSpec] = [:]
        var skipped: [String] = []
        var seen = Set<String>()
        for (index, file) in files.enumerated() {
            guard file.size >= 0 else { throw bad("file \(file.path) has a negative size") }
            guard seen.insert(file.path).inserted else { throw bad("it names \(file.path) twice") }
            if let spec = byPath[file.path], spec.sha256 == file.sha256, spec.size == file.size {
                matched[index] = spec
            } else {
                skipped.append(file.path)
            }
        }
        var perFile: [Int: [(range: Range<Int64>, number: Int)]] = [:]
        var result: [(FileSpec, Range<Int64>)] = []
        for (number, extent) in ranges.enumerated() {
            guard files.indices.contains(extent.file) else { throw bad("range \(number) names file \(extent.file) of \(files.count)") }
            let file = files[extent.file]
            guard extent.offset >= 0, extent.length > 0, let end = extent.offset.checkedAdding(extent.length), end <= file.size else {
                throw bad("range \(number) (\(extent.offset) + \(extent.length)) is not inside \(file.path) (\(file.size) bytes)")
            }
            guard extent.at.isFinite, extent.at >= 0 else { throw bad("range \(number) has the time \(extent.at)") }
            perFile[extent.file, default: []].append((extent.offset..<end, number))
            if let spec = matched[extent.file] { result.append((spec, extent.offset..<end)) }
        }
        // Each file's ranges, sorted: neighbours must not overlap (n log n, whatever the order).
        for (index, list) in perFile {
            let sorted = list.sorted { $0.range.lowerBound < $1.range.lowerBound }
            for (a, b) in zip(sorted, sorted.dropFirst()) where a.range.overlaps(b.range) {
                throw bad("range \(max(a.number, b.number)) overlaps range \(min(a.number, b.number)) of \(files[index].path)")
            }
        }
        return (result, skipped)
    }

    // MARK: - JSON

    /// Reads a trace written by ``encoded()`` (at most ``maxFileBytes``).
    public static func decode(_ data: Data, source: String) throws(OrchestratorError) -> AccessTrace {
        guard data.count <= maxFileBytes else {
            throw .configInvalid(key: "trace", message: "\(source) is \(data.count) bytes (a trace is at most \(maxFileBytes))")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(AccessTrace.self, from: data)
        } catch {
            throw .configInvalid(key: "trace", message: "\(source) is not a wan access trace: \(Self.describe(error))")
        }
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(self) + Data("\n".utf8)
    }

    private static func describe(_ error: any Error) -> String {
        switch error as? DecodingError {
        case .keyNotFound(let key, _): "it has no \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            (context.codingPath.map(\.stringValue).joined(separator: ".") + " " + context.debugDescription).trimmingCharacters(in: .whitespaces)
        default: "\(error)"
        }
    }
}
