import Foundation
import WanSystem

/// AWS Signature Version 4 for S3 requests with an empty payload (GET, HEAD), signed with
/// OpenSSL's HMAC-SHA256.
///
/// Why not CURLOPT_AWS_SIGV4: libcurl 7.88 neither sends `x-amz-content-sha256` (S3
/// requires it) nor sorts and encodes the query string as SigV4 demands, so ListObjectsV2
/// with a continuation token would fail. Signing here is a few lines and is checked against
/// AWS's published example in the tests.
public struct SigV4Signer: Sendable {
    public let accessKeyID: String
    public let secretAccessKey: String
    public let sessionToken: String?
    public let region: String
    public let service: String

    /// The sha256 of an empty payload.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, region: String, service: String = "s3") {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.region = region
        self.service = service
    }

    /// The headers to add to a request: `x-amz-date`, `x-amz-content-sha256`,
    /// `x-amz-security-token` (with a session token) and `Authorization`.
    ///
    /// - Parameters:
    ///   - host: the Host header value (`host` or `host:port`).
    ///   - encodedPath: the URL path exactly as sent (already percent-encoded).
    ///   - query: decoded query parameters; encoded and sorted here.
    ///   - headers: further headers to sign (e.g. `range`), names in any case.
    public func sign(method: String, host: String, encodedPath: String, query: [(String, String)] = [],
                     headers: [(String, String)] = [], date: Date = Date(),
                     payloadHash: String = SigV4Signer.emptyPayloadHash) -> [(name: String, value: String)] {
        let (amzDate, day) = SigV4Signer.timestamps(date)
        var signed: [(String, String)] = [("host", host), ("x-amz-content-sha256", payloadHash), ("x-amz-date", amzDate)]
        if let sessionToken { signed.append(("x-amz-security-token", sessionToken)) }
        signed += headers.map { ($0.0.lowercased(), $0.1.trimmingCharacters(in: .whitespaces)) }
        signed.sort { $0.0 < $1.0 }

        let canonicalHeaders = signed.map { "\($0.0):\($0.1)\n" }.joined()
        let signedHeaders = signed.map(\.0).joined(separator: ";")
        let canonicalRequest = [method, encodedPath.isEmpty ? "/" : encodedPath, SigV4Signer.canonicalQuery(query),
                                canonicalHeaders, signedHeaders, payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope,
                            SHA256Hasher.hash(Array(canonicalRequest.utf8)).hex].joined(separator: "\n")

        var key = HMACSHA256.authenticate(Array(day.utf8), key: Array("AWS4\(secretAccessKey)".utf8))
        for part in [region, service, "aws4_request"] { key = HMACSHA256.authenticate(Array(part.utf8), key: key) }
        let signature = SHA256Digest(bytes: HMACSHA256.authenticate(Array(stringToSign.utf8), key: key)).hex

        var out: [(name: String, value: String)] = [("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash)]
        if let sessionToken { out.append(("x-amz-security-token", sessionToken)) }
        out.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return out
    }

    /// Sorted by encoded key, each `key=value` percent-encoded (spaces as %20, `/` encoded).
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        let encoded: [(key: String, value: String)] = query.map { (PercentEncoding.encode($0.0), PercentEncoding.encode($0.1)) }
        let sorted = encoded.sorted { a, b in a.key == b.key ? a.value < b.value : a.key < b.key }
        return sorted.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
    }

    static func timestamps(_ date: Date) -> (amzDate: String, day: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let day = String(format: "%04d%02d%02d", c.year!, c.month!, c.day!)
        return (day + String(format: "T%02d%02d%02dZ", c.hour!, c.minute!, c.second!), day)
    }
}
