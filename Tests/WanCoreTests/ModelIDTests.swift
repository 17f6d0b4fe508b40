import Testing
@testable import WanCore

@Suite struct ModelIDTests {
    @Test func parsesNameVersionAndVariant() throws {
        let id = try ModelID(parsing: "a@1.0.0#fp16")
        #expect(id.name == "a")
        #expect(id.version == "1.0.0")
        #expect(id.variant == "fp16")
        #expect(id.base == "a@1.0.0")
        #expect(id.description == "a@1.0.0#fp16")
    }

    @Test func keepsNameCaseAndFoldsVariantCase() throws {
        let id = try ModelID(parsing: "  t2v-A14B@2.2.0#BF16\n")
        #expect(id.description == "t2v-A14B@2.2.0#bf16")
    }

    @Test func acceptsPreReleaseVersions() throws {
        #expect(try ModelID(parsing: "ti2v-5b@1.0.0-rc.1").version == "1.0.0-rc.1")
        #expect(try ModelID(parsing: "m_x.y@10").version == "10")
    }

    @Test func variantArgumentMustAgreeWithTheId() throws {
        #expect(try ModelID(parsing: "a@1.0", variant: "FP16").variant == "fp16")
        #expect(try ModelID(parsing: "a@1.0#fp16", variant: "fp16").variant == "fp16")
        #expect(throws: OrchestratorError.self) { try ModelID(parsing: "a@1.0#fp16", variant: "bf16") }
    }

    @Test(arguments: [
        ("", "empty"),
        ("t2v-A14B", "version is missing"),
        ("t2v-A14B@", "version after '@' is empty"),
        ("@2.2.0", "name before '@' is empty"),
        ("a@1.0@2", "more than one '@'"),
        ("a@1.0#x#y", "more than one '#'"),
        ("a@1.0#", "variant after '#' is empty"),
        ("a b@1.0", "contains ' '"),
        ("a/b@1.0", "contains '/'"),
        ("-a@1.0", "must start with a letter or digit"),
        ("a@v1.0", "dot-separated numbers"),
        ("a@1..0", "dot-separated numbers"),
        ("a@1.0-", "pre-release tag"),
        ("a@1.0#fp/16", "may only contain"),
        ("modèle@1.0", "non-ASCII character 'è'"),
        ("a@1.0#ﬀ16", "non-ASCII"),
        ("t2v\u{200B}@1.0", "non-ASCII character"),
    ])
    func rejectsBadIDs(raw: String, reason: String) {
        do {
            _ = try ModelID(parsing: raw)
            Issue.record("'\(raw)' was accepted")
        } catch {
            #expect(error.code == .invalidModelID)
            #expect(error.description.contains(reason), "\(error.description)")
        }
    }

    @Test func rejectsOverlongNames() {
        #expect(throws: OrchestratorError.self) { try ModelID(parsing: String(repeating: "a", count: 129) + "@1.0") }
        #expect(throws: OrchestratorError.self) { try ModelID(parsing: "a@1.0#" + String(repeating: "v", count: 33)) }
    }
}
