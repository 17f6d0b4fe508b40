import Testing
@testable import WanSources

@Suite struct CurlLibraryTests {
    @Test func reportsLinkedLibcurl() {
        let info = CurlLibrary.info
        #expect(info.version.split(separator: ".").count == 3)
        #expect(info.protocols.contains("http"))
        #expect(info.protocols.contains("https"))
        #expect(info.sslVersion?.contains("OpenSSL") == true)
    }
}
