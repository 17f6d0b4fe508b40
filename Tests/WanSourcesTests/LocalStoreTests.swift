import Foundation
import Testing
import WanCore
@testable import WanSources

@Suite struct LocalStoreTests {
    let root: String
    let data = (0..<(9 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }

    init() throws {
        root = NSTemporaryDirectory() + "wan-local-\(UUID().uuidString)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/models/m/sub", withIntermediateDirectories: true)
        try Data(data).write(to: URL(fileURLWithPath: root + "/models/m/sub/w.bin"))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: root + "/models/m/config.json"))
        try Data("secret".utf8).write(to: URL(fileURLWithPath: root + "/outside.txt"))
        try fm.createSymbolicLink(atPath: root + "/models/m/escape.txt", withDestinationPath: root + "/outside.txt")
        try fm.createSymbolicLink(atPath: root + "/models/m/inside.json", withDestinationPath: "config.json")
    }

    func store(_ url: String = "local://models/m") throws -> LocalStore {
        try LocalStore(source: SourceURL(parsing: url), localRoot: root)
    }

    @Test func readsRangesByteExact() throws {
        let store = try store()
        for range in [Int64(0)..<1, 0..<Int64(data.count), 4_194_300..<4_194_310, Int64(data.count - 1)..<Int64(data.count)] {
            let sink = DataSink(base: range.lowerBound)
            try store.read("sub/w.bin", range: range, fileSize: nil, into: sink, cancel: .none)
            #expect(sink.bytes == Array(data[Int(range.lowerBound)..<Int(range.upperBound)]))
        }
        #expect(try store.stat("sub/w.bin", cancel: .none).size == Int64(data.count))
    }

    @Test func absoluteSourcesWork() throws {
        let store = try store("local://" + root + "/models/m")
        #expect(try store.stat("config.json", cancel: .none).size == 2)
    }

    @Test func refusesEmptyAndOutOfRangeReads() throws {
        let store = try store()
        #expect(throws: SourceError.self) { try store.read("sub/w.bin", range: 3..<3, fileSize: nil, into: DiscardSink(), cancel: .none) }
        do {
            try store.read("sub/w.bin", range: Int64(data.count - 1)..<Int64(data.count + 1), fileSize: nil, into: DiscardSink(), cancel: .none)
            Issue.record("no error")
        } catch {
            #expect(error.kind == .invalidRange)
            #expect(error.message.contains("outside sub/w.bin"))
        }
    }

    @Test func refusesPathsThatEscapeTheRoot() throws {
        let store = try store()
        for path in ["../../outside.txt", "escape.txt", "/etc/passwd"] {
            do {
                _ = try store.stat(path, cancel: .none)
                Issue.record("\(path) was served")
            } catch {
                #expect(error.kind == .misconfigured, "\(path): \(error)")
                #expect(error.message.contains("refusing"))
            }
        }
        #expect(try store.stat("inside.json", cancel: .none).size == 2, "a symlink that stays inside is fine")
    }

    @Test func missingFilesAreNotFound() throws {
        let store = try store()
        do {
            _ = try store.stat("nope.bin", cancel: .none)
            Issue.record("no error")
        } catch {
            #expect(error.kind == .notFound)
            #expect(error.code.rawValue == "REMOTE_NOT_FOUND")
        }
    }

    @Test func listsFilesInsideTheRoot() throws {
        let files = try store().list(prefix: "", cancel: .none)
        #expect(files.map(\.path) == ["config.json", "inside.json", "sub/w.bin"])
        #expect(files.last?.size == Int64(data.count))
    }

    @Test func failoverSkipsAMissingSourceAndNamesEveryFailure() throws {
        let missing = try store("local://models/none")
        let good = try store()
        let file = FileSpec(path: "sub/w.bin", size: Int64(data.count), sha256: String(repeating: "0", count: 64))
        let reader = FailoverReader(backends: [missing, good], health: SourceHealth())
        let sink = DataSink(base: 100)
        let used = try reader.read(file, range: 100..<200, into: sink)
        #expect(used.displayName == "local://models/m")
        #expect(sink.bytes == Array(data[100..<200]))

        let none = FailoverReader(backends: [missing, try store("local://models/none2")], health: SourceHealth())
        do {
            try none.read(file, range: 0..<1, into: DiscardSink())
            Issue.record("no error")
        } catch let error as AllSourcesFailedError {
            #expect(error.failures.count == 2)
            #expect(error.description.contains("local://models/none") && error.description.contains("local://models/none2"))
            #expect(error.code.rawValue == "REMOTE_NOT_FOUND")
        }
    }

    @Test func failoverMovesOnWhenVerificationRejectsBytes() throws {
        let first = try store()
        let second = try store("local://" + root + "/models/m")
        let file = FileSpec(path: "config.json", size: 2, sha256: String(repeating: "0", count: 64))
        let reader = FailoverReader(backends: [first, second], health: SourceHealth())
        var calls = 0
        let used = try reader.read(file, range: 0..<2, into: DiscardSink(), verify: { backend in
            calls += 1
            if backend.displayName == "local://models/m" {
                throw SourceError(.corrupt, source: backend.displayName, message: "chunk 0 digest mismatch")
            }
        })
        #expect(calls == 2)
        #expect(used.displayName.hasPrefix("local:///"))
    }
}
