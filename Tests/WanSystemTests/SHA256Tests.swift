import Foundation
import Testing
@testable import WanSystem

@Suite struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256Hasher.hash([UInt8]()).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256Hasher.hash(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)
        #expect(SHA256Hasher.hash(long).hex == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func streamingEqualsOneShotAndCopyForks() {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let hasher = SHA256Hasher()
        hasher.update(data[..<40_000])
        let fork = hasher.copy()
        hasher.update(data[40_000...])
        #expect(hasher.finalize() == SHA256Hasher.hash(data))
        #expect(fork.finalize() == SHA256Hasher.hash(data[..<40_000]))
    }

    @Test func hashesAFile() throws {
        let path = NSTemporaryDirectory() + "/wan-sha-\(UUID().uuidString)"
        let data = (0..<(5 << 20)).map { UInt8(truncatingIfNeeded: $0 % 251) }
        _ = FileManager.default.createFile(atPath: path, contents: Data(data))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try SHA256Hasher.hash(fileAt: path) == SHA256Hasher.hash(data))
    }

    @Test func hmacMatchesRFC4231() {
        // RFC 4231 test case 2.
        let mac = HMACSHA256.authenticate(Array("what do ya want for nothing?".utf8), key: Array("Jefe".utf8))
        #expect(SHA256Digest(bytes: mac).hex == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func linksSystemOpenSSL() {
        #expect(SHA256Hasher.libraryVersion.hasPrefix("OpenSSL 3"))
    }
}
