import Testing
@testable import WanCore

@Suite struct ByteSizeTests {
    @Test(arguments: [
        ("1048576", Int64(1_048_576)), ("1KB", 1000), ("1kb", 1000), ("100GB", 100_000_000_000),
        ("1KiB", 1024), ("100GiB", 107_374_182_400), ("1.5GB", 1_500_000_000), ("2 MiB", 2_097_152), ("0", 0),
    ])
    func parses(text: String, bytes: Int64) throws {
        #expect(try ByteSize.parse(text) == bytes)
    }

    @Test(arguments: [("10G", "ambiguous"), ("abc", "expected a number"), ("5XB", "unknown unit"), ("1.5", "whole number")])
    func rejects(text: String, reason: String) {
        do {
            _ = try ByteSize.parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test func formatsForPeople() {
        #expect(ByteSize.format(999) == "999 B")
        #expect(ByteSize.format(1_500_000_000) == "1.50 GB")
        #expect(ByteSize.format(12_345) == "12.35 KB")
    }

    @Test func parsesDurations() throws {
        #expect(try DurationText.parse("30d", key: "k") == 30 * 86400)
        #expect(try DurationText.parse("90", key: "k") == 90)
        #expect(throws: OrchestratorError.self) { try DurationText.parse("soon", key: "k") }
    }
}
