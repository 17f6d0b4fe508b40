import Foundation
import Testing
@testable import WanSources

/// The signer against the examples of AWS's "Signature Calculations for the Authorization
/// Header" (Amazon S3 API reference).
@Suite struct SigV4Tests {
    let signer = SigV4Signer(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                             region: "us-east-1")
    let date = Date(timeIntervalSince1970: 1_369_353_600)   // 2013-05-24T00:00:00Z

    func authorization(_ headers: [(name: String, value: String)]) -> String {
        headers.first { $0.name == "Authorization" }?.value ?? ""
    }

    @Test func getObjectExample() {
        let headers = signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", encodedPath: "/test.txt",
                                  headers: [("Range", "bytes=0-9")], date: date)
        #expect(authorization(headers) == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(headers.contains { $0.name == "x-amz-date" && $0.value == "20130524T000000Z" })
        #expect(headers.contains { $0.name == "x-amz-content-sha256" && $0.value == SigV4Signer.emptyPayloadHash })
    }

    @Test func listObjectsExampleWithQuery() {
        let headers = signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", encodedPath: "/",
                                  query: [("prefix", "J"), ("max-keys", "2")], date: date)
        #expect(authorization(headers).hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"))
    }

    @Test func sessionTokenIsSentAndSigned() {
        let withToken = SigV4Signer(accessKeyID: "AKID", secretAccessKey: "secret", sessionToken: "tok+en/=", region: "eu-west-1")
        let headers = withToken.sign(method: "HEAD", host: "h", encodedPath: "/b/k", date: date)
        #expect(headers.contains { $0.name == "x-amz-security-token" && $0.value == "tok+en/=" })
        #expect(authorization(headers).contains("SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token"))
        #expect(authorization(headers).contains("/eu-west-1/s3/aws4_request"))
        #expect(!authorization(headers).contains("secret"))
    }

    @Test func canonicalQueryIsSortedAndEncoded() {
        #expect(SigV4Signer.canonicalQuery([("prefix", "a b/c"), ("list-type", "2"), ("continuation-token", "x+y=")])
                == "continuation-token=x%2By%3D&list-type=2&prefix=a%20b%2Fc")
    }

    @Test func keysAreEncodedAsSigV4Demands() {
        #expect(PercentEncoding.encodePath("dir/a b+c&d@e~f.g_h-i") == "dir/a%20b%2Bc%26d%40e~f.g_h-i")
        #expect(PercentEncoding.encodePath("modèle/日本.bin") == "mod%C3%A8le/%E6%97%A5%E6%9C%AC.bin")
        #expect(PercentEncoding.encode("refs/pr/1") == "refs%2Fpr%2F1")
        #expect(PercentEncoding.decode("a%20b%2Fc%zz") == "a b/c%zz")
    }
}
