import Testing
@testable import WanFS

@Suite struct FuseLibraryTests {
    @Test func reportsLinkedLibfuse3() {
        #expect(FuseLibrary.version.hasPrefix("3."))
        #expect(FuseLibrary.apiVersion >= 312)
    }
}
